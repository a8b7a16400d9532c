"""SQLite's own schema choices (migrations/sqlite/0009 on): the indexes the pipeline writes."""

from __future__ import annotations

from pathlib import Path

from cairn.storage.sqlite import SQLiteStorage


def test_person_events_keeps_only_the_indexes_its_queries_use(tmp_path: Path) -> None:
    """No index by identifier (its random keys cost the pipeline a page per event), and the
    unmerge's move of an identifier's events reads them through the person's timeline index."""
    storage = SQLiteStorage(tmp_path / "cairn.db")
    try:
        storage.migrate()
        storage.migrate()  # again: a migrated database is left as it is
        names = {
            row[0]
            for row in storage.rows(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'person_events'"
            )
        }
        plan = " ".join(
            str(row[-1])
            for row in storage.rows(
                "EXPLAIN QUERY PLAN UPDATE person_events SET person_id = 1 "
                "WHERE person_id = 2 AND identifier_id IN (3, 4)"
            )
        )
    finally:
        storage.close()
    assert names == {"person_events_timeline", "person_events_name", "person_events_person_name"}
    assert "person_events_timeline" in plan or "person_events_person_name" in plan
    assert "SCAN person_events" not in plan
