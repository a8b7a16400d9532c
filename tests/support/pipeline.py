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

__all__ = ["Log", "iso", "msg"]

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
