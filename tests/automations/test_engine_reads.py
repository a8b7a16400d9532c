"""The engine's reads stay within its slice of the log, however long the log is (PostgreSQL: its
planner chose a merge join that read the log from its first event on every step)."""

from __future__ import annotations

from typing import Any

import pytest

from cairn.automations import AutomationEngine
from cairn.automations.engine import EVENTS, PAGE
from cairn.storage.people import PIPELINE_CURSOR, PeopleStore
from cairn.storage.postgres import PostgresStorage

pytestmark = pytest.mark.postgres

_EVENTS = 60_000


def _rows_read(plan: dict[str, Any], relation: str) -> float:
    """Rows the plan's nodes on `relation` returned, over all their loops."""
    own = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
    found = own if plan.get("Relation Name") == relation else 0
    return found + sum(_rows_read(child, relation) for child in plan.get("Plans", []))


def test_the_event_triggers_read_only_their_slice_of_the_log(postgres_url: str) -> None:
    storage = PostgresStorage(postgres_url)
    try:
        storage.migrate()
        with storage.transaction() as conn:
            conn.execute(
                "INSERT INTO events (seq, workspace_id, source_id, message_id, dedupe_bucket, "
                "type, event, timestamp_ms, received_ms, body) SELECT g, 1, 'src', 'm' || g, 0, "
                "'track', 'Thing Done', g, g, '{}'::bytea FROM generate_series(1, %s) g",
                (_EVENTS,),
            )
            conn.execute(
                "INSERT INTO person_events (seq, workspace_id, person_id, identifier_id, type, "
                "event, timestamp_ms) SELECT g, 1, g %% 1000, g %% 1000, 'track', 'Thing Done', g "
                "FROM generate_series(1, %s) g",
                (_EVENTS,),
            )
            conn.execute("ANALYZE events")
            conn.execute("ANALYZE person_events")
        store = PeopleStore(storage)
        with store.tx() as tx:
            for name, position in ((PIPELINE_CURSOR, _EVENTS), (EVENTS, _EVENTS - PAGE)):
                tx.run(
                    "INSERT INTO cursors (name, position, updated_ms) VALUES (?, ?, 0) "
                    "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    (name, position),
                )
        engine = AutomationEngine(store)
        seen: list[tuple[str, tuple[Any, ...]]] = []
        rows = store.rows

        def recording(sql: str, params: Any = ()) -> list[Any]:
            seen.append((sql, tuple(params)))
            return rows(sql, params)

        store.rows = recording  # type: ignore[method-assign]
        found = engine._events([])
        assert found is not None
        assert len(found.touched) > 0
        (sql, params), *_ = [(s, p) for s, p in seen if "FROM person_events x" in s]
        plan = storage.rows(store.sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params)[0][0]
    finally:
        storage.close()
    assert _rows_read(plan[0]["Plan"], "events") <= 2 * PAGE
