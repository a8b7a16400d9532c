"""Installed plans, their versions, the violations report and the quarantine (docs/plans.md).

`PlanStore` is what the API, the CLI and the pipeline's plans stage share: installing a plan on a
source keeps every earlier version; the stage asks `checker(source)` for the compiled active plan
(cached; a new version is picked up within a second, at once in the installing process).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from cairn.errors import NotFound
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.plans.naming import NamingConfig
from cairn.plans.plan import CompiledPlan, Plan, plan_from_json
from cairn.storage.people import PeopleStore, decode_json

__all__ = ["Checker", "PlanStore"]

_REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Checker:
    """What the plans stage applies to one source's events."""

    plan: CompiledPlan | None
    version: int | None
    naming: NamingConfig


def naming_from_json(raw: Any) -> NamingConfig:
    raw = raw if isinstance(raw, dict) else {}
    return NamingConfig(
        exceptions=frozenset(raw.get("exceptions") or ()),
        extra_verbs=frozenset(raw.get("extra_verbs") or ()),
        severity=dict(raw.get("severity") or {}),
    )


def naming_to_json(config: NamingConfig) -> dict[str, Any]:
    return {
        "exceptions": sorted(config.exceptions),
        "extra_verbs": sorted(config.extra_verbs),
        "severity": dict(config.severity),
    }


class PlanStore:
    def __init__(self, store: PeopleStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._checkers: dict[str, Checker] = {}
        self._naming: dict[int, NamingConfig] = {}
        self._loaded = 0.0

    # installing -----------------------------------------------------------------------------
    def install(self, workspace_id: int, source_id: str, plan: Plan) -> dict[str, Any]:
        """Make `plan` the source's active plan, as its next version."""
        self._source(workspace_id, source_id)
        document = plan.to_json()
        with self.store.tx() as tx:
            rows = tx.all(
                "SELECT coalesce(max(version), 0) FROM plan_versions WHERE source_id = ?",
                (source_id,),
            )
            version = int(rows[0][0]) + 1
            tx.run(
                "UPDATE plan_versions SET active = ? WHERE source_id = ?",
                (self.store.storage.flag(False), source_id),
            )
            tx.run(
                "INSERT INTO plan_versions (workspace_id, source_id, version, name, plan, active, "
                "created_ms) VALUES (?, ?, ?, ?, {j}, ?, ?)",
                (workspace_id, source_id, version, plan.name, self.store.json(document),
                 self.store.storage.flag(True), now_ms()),
            )  # fmt: skip
        self.invalidate()
        return {"source_id": source_id, "version": version, "name": plan.name}

    def remove(self, workspace_id: int, source_id: str) -> None:
        """No plan for the source any more (naming rules still apply); versions are kept."""
        self._source(workspace_id, source_id)
        with self.store.tx() as tx:
            tx.run(
                "UPDATE plan_versions SET active = ? WHERE source_id = ?",
                (self.store.storage.flag(False), source_id),
            )
        self.invalidate()

    def _source(self, workspace_id: int, source_id: str) -> None:
        rows = self.store.rows(
            "SELECT 1 FROM sources WHERE id = ? AND workspace_id = ?", (source_id, workspace_id)
        )
        if not rows:
            raise NotFound(f"no source {source_id!r} in this workspace")

    def versions(self, workspace_id: int, source_id: str) -> list[dict[str, Any]]:
        self._source(workspace_id, source_id)
        rows = self.store.rows(
            "SELECT version, name, active, created_ms FROM plan_versions WHERE source_id = ? "
            "ORDER BY version DESC",
            (source_id,),
        )
        return [
            {"version": v, "name": name, "active": bool(active), "created_at": format_ms(created)}
            for v, name, active, created in rows
        ]

    def plan(self, workspace_id: int, source_id: str, version: int | None = None) -> dict[str, Any]:
        self._source(workspace_id, source_id)
        if version is None:
            rows = self.store.rows(
                "SELECT version, plan FROM plan_versions WHERE source_id = ? AND active = ?",
                (source_id, self.store.storage.flag(True)),
            )
        else:
            rows = self.store.rows(
                "SELECT version, plan FROM plan_versions WHERE source_id = ? AND version = ?",
                (source_id, version),
            )
        if not rows:
            raise NotFound("no such plan version" if version else "the source has no plan")
        return {"version": rows[0][0], "plan": decode_json(rows[0][1])}

    # naming settings ------------------------------------------------------------------------
    def naming(self, workspace_id: int) -> NamingConfig:
        rows = self.store.rows(
            "SELECT config FROM naming_settings WHERE workspace_id = ?", (workspace_id,)
        )
        return naming_from_json(decode_json(rows[0][0])) if rows else NamingConfig()

    def set_naming(self, workspace_id: int, config: NamingConfig) -> None:
        with self.store.tx() as tx:
            tx.run(
                "INSERT INTO naming_settings (workspace_id, config, updated_ms) VALUES (?, {j}, ?) "
                "ON CONFLICT (workspace_id) DO UPDATE SET config = excluded.config, "
                "updated_ms = excluded.updated_ms",
                (workspace_id, self.store.json(naming_to_json(config)), now_ms()),
            )
        self.invalidate()

    # for the pipeline -----------------------------------------------------------------------
    def invalidate(self) -> None:
        with self._lock:
            self._loaded = 0.0

    def checker(self, workspace_id: int, source_id: str) -> Checker:
        if time.monotonic() - self._loaded > _REFRESH_SECONDS:
            self._reload()
        found = self._checkers.get(source_id)
        if found is not None:
            return found
        naming = self._naming.get(workspace_id)
        if naming is None:
            naming = self._naming[workspace_id] = self.naming(workspace_id)
        return Checker(None, None, naming)

    def _reload(self) -> None:
        rows = self.store.rows(
            "SELECT v.source_id, v.version, v.plan, s.name FROM plan_versions v "
            "JOIN sources s ON s.id = v.source_id WHERE v.active = ?",
            (self.store.storage.flag(True),),
        )
        checkers: dict[str, Checker] = {}
        for source_id, version, document, source_name in rows:
            old = self._checkers.get(source_id)
            if old is not None and old.version == version:
                checkers[source_id] = old  # compiled once per version
                continue
            plan = plan_from_json(decode_json(document), source=f"{source_id} v{version}")
            checkers[source_id] = Checker(CompiledPlan(plan, source_name), version, plan.naming)
        with self._lock:
            self._checkers = checkers
            self._naming = {}
            self._loaded = time.monotonic()

    # the weekly report ------------------------------------------------------------------------
    def violations(
        self, workspace_id: int, *, source_id: str | None, since_ms: int | None, limit: int = 500
    ) -> list[dict[str, Any]]:
        clauses, params = ["workspace_id = ?"], list[Any]([workspace_id])
        if source_id is not None:
            clauses.append("source_id = ?")
            params.append(source_id)
        if since_ms is not None:
            clauses.append("at_ms >= ?")
            params.append(since_ms)
        rows = self.store.rows(
            "SELECT event, rule, path, severity, source_id, count(*), min(at_ms), max(at_ms), "
            "max(seq), max(plan_version), max(message) FROM event_violations "
            f"WHERE {' AND '.join(clauses)} GROUP BY event, rule, path, severity, source_id "
            "ORDER BY count(*) DESC, event, rule, path LIMIT ?",
            (*params, limit),
        )
        examples = self._bodies([row[8] for row in rows])
        return [
            {"event": event, "rule": rule, "property": path or None, "severity": severity,
             "source_id": source, "count": count, "first_seen": format_ms(first),
             "last_seen": format_ms(last), "plan_version": version, "message": message,
             "example": examples.get(seq)}
            for (event, rule, path, severity, source, count, first, last, seq, version,
                 message) in rows
        ]  # fmt: skip

    def _bodies(self, seqs: list[int]) -> dict[int, Any]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        return {
            seq: decode_json(bytes(body))
            for seq, body in self.store.rows(
                f"SELECT seq, body FROM events WHERE seq IN ({marks})", seqs
            )
        }

    def quarantine(self, workspace_id: int, *, limit: int = 100, after: int = 0) -> dict[str, Any]:
        rows = self.store.rows(
            "SELECT seq, source_id, plan_version, violations, at_ms FROM quarantine "
            "WHERE workspace_id = ? AND released_ms IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (workspace_id, after, limit),
        )
        bodies = self._bodies([row[0] for row in rows])
        data = [
            {"seq": seq, "source_id": source, "plan_version": version,
             "violations": decode_json(violations), "at": format_ms(at),
             "message": bodies.get(seq)}
            for seq, source, version, violations, at in rows
        ]  # fmt: skip
        return {"data": data, "next_cursor": str(rows[-1][0]) if len(rows) == limit else None}

    def quarantined_seqs(self, workspace_id: int, seqs: list[int] | None) -> list[int]:
        rows = self.store.rows(
            "SELECT seq FROM quarantine WHERE workspace_id = ? AND released_ms IS NULL ORDER BY seq",
            (workspace_id,),
        )
        found = [row[0] for row in rows]
        if seqs is None:
            return found
        missing = set(seqs) - set(found)
        if missing:
            raise NotFound(f"event {sorted(missing)[0]} is not in the quarantine")
        return sorted(seqs)
