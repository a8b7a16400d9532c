"""Automation definitions of a database: create, update (a new version when the definition
changes), change state (draft, live, paused), delete, and per-automation counts of runs.

Going live records the log's last sequence number: only events after it trigger the automation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cairn.automations.definition import STATES, Definition, DefinitionError, parse_definition
from cairn.errors import Conflict, NotFound
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.storage.people import PeopleStore, Tx, decode_json

__all__ = ["OUTCOMES", "Automation", "Automations"]

OUTCOMES = ("entered", "completed", "converted", "exited", "failed")
MAX_AUTOMATIONS = 500
_COLUMNS = (
    "a.id, a.workspace_id, a.name, a.state, a.version, a.live_after_seq, a.live_since_ms, "
    "a.created_ms, a.updated_ms, v.definition"
)
_FROM = (
    "automations a JOIN automation_versions v ON v.automation_id = a.id AND v.version = a.version"
)


@dataclass(frozen=True)
class Automation:
    id: int
    workspace_id: int
    name: str
    state: str
    version: int
    live_after_seq: int | None
    live_since_ms: int | None
    created_ms: int
    updated_ms: int
    definition: Definition

    def json(self, counts: dict[str, int] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "version": self.version,
            "live_since": format_ms(self.live_since_ms) if self.live_since_ms else None,
            "definition": {**self.definition.raw, "state": self.state},
            "created_at": format_ms(self.created_ms),
            "updated_at": format_ms(self.updated_ms),
        }
        if counts is not None:
            body["counts"] = counts
        return body


class Automations:
    """Definitions, their versions and states. Parsed versions are cached (they never change)."""

    def __init__(self, store: PeopleStore) -> None:
        self.store = store
        self._parsed: dict[tuple[int, int], Definition] = {}

    # reading ------------------------------------------------------------------------------------
    def _automation(self, row: Any) -> Automation:
        aid, ws, name, state, version, after, since, created, updated, raw = row
        return Automation(aid, ws, name, state, version, after, since, created, updated,
                          self.definition(aid, version, raw))  # fmt: skip

    def definition(self, automation_id: int, version: int, raw: Any = None) -> Definition:
        key = (automation_id, version)
        found = self._parsed.get(key)
        if found is None:
            if raw is None:
                rows = self.store.rows(
                    "SELECT definition FROM automation_versions WHERE automation_id = ? "
                    "AND version = ?",
                    key,
                )
                if not rows:
                    raise NotFound(f"no version {version} of automation {automation_id}")
                raw = rows[0][0]
            if len(self._parsed) > 5_000:
                self._parsed.clear()
            found = self._parsed[key] = parse_definition(decode_json(raw))
        return found

    def all(self, workspace_id: int | None = None, *, state: str | None = None) -> list[Automation]:
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        if workspace_id is not None:
            clauses.append("a.workspace_id = ?")
            params.append(workspace_id)
        if state is not None:
            clauses.append("a.state = ?")
            params.append(state)
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE {' AND '.join(clauses)} ORDER BY a.id", params
        )
        return [self._automation(row) for row in rows]

    def get(self, workspace_id: int, automation_id: int) -> Automation:
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.workspace_id = ? AND a.id = ?",
            (workspace_id, automation_id),
        )
        if not rows:
            raise NotFound(f"no automation {automation_id}")
        return self._automation(rows[0])

    def by_name(self, workspace_id: int, name: str) -> Automation | None:
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.workspace_id = ? AND a.name = ?",
            (workspace_id, name),
        )
        return self._automation(rows[0]) if rows else None

    def versions(self, workspace_id: int, automation_id: int) -> list[dict[str, Any]]:
        self.get(workspace_id, automation_id)
        rows = self.store.rows(
            "SELECT version, source, created_ms, definition FROM automation_versions "
            "WHERE automation_id = ? ORDER BY version DESC",
            (automation_id,),
        )
        return [
            {"version": v, "source": s, "created_at": format_ms(c), "definition": decode_json(d)}
            for v, s, c, d in rows
        ]

    def counts(self, automation_id: int) -> dict[str, int]:
        counts = dict.fromkeys((*OUTCOMES, "active"), 0)
        for state, n in self.store.rows(
            "SELECT state, count(*) FROM automation_runs WHERE automation_id = ? GROUP BY state",
            (automation_id,),
        ):
            key = state if state in counts else "active"
            counts[key] += int(n)
            counts["entered"] += int(n)
        return counts

    # writing ------------------------------------------------------------------------------------
    def create(self, workspace_id: int, raw: Any, *, source: str = "api") -> Automation:
        definition = parse_definition(raw)
        if self.by_name(workspace_id, definition.name) is not None:
            raise Conflict(f'an automation named "{definition.name}" already exists')
        if len(self.all(workspace_id)) >= MAX_AUTOMATIONS:
            raise Conflict(f"a workspace has at most {MAX_AUTOMATIONS} automations")
        now = now_ms()
        after, since = self._live_marks(definition.state, now)
        with self.store.tx() as tx:
            aid = tx.all(
                "INSERT INTO automations (workspace_id, name, state, version, live_after_seq, "
                "live_since_ms, created_ms, updated_ms) VALUES (?, ?, ?, 1, ?, ?, ?, ?) "
                "RETURNING id",
                (workspace_id, definition.name, definition.state, after, since, now, now),
            )[0][0]
            self._version(tx, aid, 1, definition, source, now)
        return self.get(workspace_id, aid)

    def update(
        self, workspace_id: int, automation_id: int, raw: Any, *, source: str = "api"
    ) -> Automation:
        current = self.get(workspace_id, automation_id)
        definition = parse_definition(raw)
        if definition.name != current.name and self.by_name(workspace_id, definition.name):
            raise Conflict(f'an automation named "{definition.name}" already exists')
        changed = _stored(definition) != _stored(current.definition)
        version = current.version + int(changed)
        now = now_ms()
        with self.store.tx() as tx:
            if changed:
                self._version(tx, automation_id, version, definition, source, now)
            tx.run(
                "UPDATE automations SET name = ?, version = ?, updated_ms = ? WHERE id = ?",
                (definition.name, version, now, automation_id),
            )
            if "state" in raw:
                self._set_state(tx, current, definition.state, now)
        return self.get(workspace_id, automation_id)

    def set_state(self, workspace_id: int, automation_id: int, state: str) -> Automation:
        if state not in STATES:
            raise DefinitionError(f"state is one of {', '.join(STATES)}", at="/state")
        current = self.get(workspace_id, automation_id)
        with self.store.tx() as tx:
            self._set_state(tx, current, state, now_ms())
        return self.get(workspace_id, automation_id)

    def _set_state(self, tx: Tx, current: Automation, state: str, now: int) -> None:
        if state == current.state:
            return
        after, since = self._live_marks(state, now)
        tx.run(
            "UPDATE automations SET state = ?, live_after_seq = ?, live_since_ms = ?, "
            "updated_ms = ? WHERE id = ?",
            (state, after, since, now, current.id),
        )

    def delete(self, workspace_id: int, automation_id: int) -> None:
        """Remove the automation; its open runs end as exited (history stays)."""
        self.get(workspace_id, automation_id)
        now = now_ms()
        with self.store.tx() as tx:
            tx.run(
                "UPDATE automation_runs SET state = 'exited', due_ms = NULL, ended_ms = ?, "
                "error = 'automation deleted' WHERE automation_id = ? AND ended_ms IS NULL",
                (now, automation_id),
            )
            tx.run("DELETE FROM automations WHERE id = ?", (automation_id,))

    def apply(
        self, workspace_id: int, definitions: list[tuple[str, Definition]]
    ) -> list[dict[str, Any]]:
        """Create or update each (source, definition) by name; what happened to each."""
        names = [d.name for _, d in definitions]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise Conflict(f'two files define the automation "{dup}"')
        results = []
        for source, definition in definitions:
            existing = self.by_name(workspace_id, definition.name)
            if existing is None:
                made = self.create(workspace_id, definition.raw, source=source)
                results.append({"name": made.name, "id": made.id, "version": 1,
                                "result": "created", "state": made.state})  # fmt: skip
                continue
            updated = self.update(workspace_id, existing.id, definition.raw, source=source)
            same = updated.version == existing.version and updated.state == existing.state
            results.append({"name": updated.name, "id": updated.id, "version": updated.version,
                            "result": "unchanged" if same else "updated",
                            "state": updated.state})  # fmt: skip
        return results

    def _version(
        self,
        tx: Tx,
        automation_id: int,
        version: int,
        definition: Definition,
        source: str,
        now: int,
    ) -> None:
        tx.run(
            "INSERT INTO automation_versions (automation_id, version, definition, source, "
            "created_ms) VALUES (?, ?, {j}, ?, ?)",
            (automation_id, version, self.store.json(_stored(definition)), source[:500], now),
        )

    def _live_marks(self, state: str, now: int) -> tuple[int | None, int | None]:
        if state != "live":
            return None, None
        return self.store.storage.last_seq(), now


def _stored(definition: Definition) -> dict[str, Any]:
    """The definition as versioned: its JSON form without the state (a state change is not a new
    version)."""
    return {k: v for k, v in definition.raw.items() if k != "state"}
