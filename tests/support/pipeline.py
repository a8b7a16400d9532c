"""A pipeline over a real database, fed through the collector's own normalization.

`Log.send(...)` turns Segment messages into log records exactly as the collector does and appends
them; `Log.run()` runs the pipeline until the log is consumed. Used by the pipeline, identity,
profile and timeline tests on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cairn.identity.rules import IdentityRules
from cairn.ingest.messages import EventRecord, RequestInfo, normalize
from cairn.ingest.timestamps import now_ms
from cairn.pipeline.runner import Pipeline
from cairn.storage.base import Source, Workspace
from cairn.storage.people import PeopleStore
from cairn.storage.sql import SQLStorage
from cairn.workspaces import create_source

__all__ = ["Log", "accounts_snapshot", "iso", "msg", "snapshot"]

_ids = itertools.count(1)


def iso(ms: int) -> str:
    from cairn.ingest.timestamps import format_ms

    return format_ms(ms)


def msg(type_: str, *, at: int, **fields: Any) -> dict[str, Any]:
    """A message of `type_` at `at` (epoch ms) with a fresh messageId."""
    return {"type": type_, "messageId": f"m-{next(_ids)}", "timestamp": iso(at), **fields}


@dataclass
class Log:
    storage: SQLStorage
    rules: IdentityRules = field(default_factory=IdentityRules)
    workspace: Workspace | None = None
    source: Source | None = None
    pipeline: Pipeline | None = None

    def __post_init__(self) -> None:
        existing = self.storage.list_workspaces()
        self.workspace = existing[0] if existing else self.storage.create_workspace("default")
        self.source = create_source(self.storage, self.workspace, f"src-{next(_ids)}")
        self.pipeline = Pipeline(self.storage, self.rules, batch_size=50)

    @property
    def store(self) -> PeopleStore:
        assert self.pipeline is not None
        return self.pipeline.store

    def records(self, messages: Iterable[dict[str, Any]]) -> list[EventRecord]:
        assert self.workspace is not None
        assert self.source is not None
        info = RequestInfo(self.workspace.id, self.source.id, now_ms())
        out = []
        for index, message in enumerate(messages):
            record = normalize(dict(message), index, info)
            assert isinstance(record, EventRecord), record
            out.append(record)
        return out

    def send(self, *messages: dict[str, Any]) -> None:
        self.storage.append(self.records(messages), [])

    def run(self) -> int:
        assert self.pipeline is not None
        return self.pipeline.run_until_idle()


def snapshot(store: PeopleStore, workspace_id: int) -> dict[Any, Any]:
    """Everything derived, keyed by each person's identifiers rather than by their ids (which
    depend on arrival order): traits, counters, memberships, timeline events, history."""
    from cairn.pipeline.batch import person_from_row
    from cairn.storage.people import PERSON_COLUMNS, decode_json

    rows = store.rows(
        f"SELECT {PERSON_COLUMNS} FROM persons WHERE workspace_id = ? AND merged_into IS NULL",
        (workspace_id,),
    )
    out: dict[Any, Any] = {}
    for row in rows:
        person = person_from_row(row)
        ids = frozenset(
            (kind, value)
            for kind, value in store.rows(
                "SELECT kind, value FROM identifiers WHERE person_id = ?", (person.id,)
            )
        )
        if not ids:
            continue
        events = sorted(
            r[0]
            for r in store.rows("SELECT seq FROM person_events WHERE person_id = ?", (person.id,))
        )
        members = sorted(
            (r[0], r[1])
            for r in store.rows(
                "SELECT group_id, joined_ms FROM account_members WHERE person_id = ?", (person.id,)
            )
        )
        history = sorted(
            (r[0], r[1], msgspec_json(decode_json(r[2])))
            for r in store.rows(
                "SELECT kind, seq, data FROM person_history WHERE person_id = ? "
                "AND identifier_id IS NOT NULL",
                (person.id,),
            )
        )
        p = person.profile
        out[ids] = {
            "traits": p.traits,
            "trait_ts": p.trait_ts,
            "event_counts": p.event_counts,
            "first_seen": p.first_seen_ms,
            "last_seen": p.last_seen_ms,
            "events": p.events,
            "revenue": p.revenue_micros,
            "user_ids": person.user_ids,
            "identifiers": person.identifiers,
            "timeline": events,
            "accounts": members,
            "history": history,
        }
    return out


def msgspec_json(value: Any) -> str:
    import msgspec

    return msgspec.json.encode(value, order="sorted").decode()


def accounts_snapshot(store: PeopleStore, workspace_id: int) -> dict[str, Any]:
    from cairn.storage.people import decode_json

    return {
        gid: (decode_json(traits), decode_json(counts), events)
        for gid, traits, counts, events in store.rows(
            "SELECT group_id, traits, event_counts, events FROM accounts WHERE workspace_id = ?",
            (workspace_id,),
        )
    }
