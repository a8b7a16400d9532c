"""Schema choices for the pipeline's writes (migrations postgres/0008, sqlite/0009): the indexes
`person_events` keeps are the ones its reads use, on both backends."""

from __future__ import annotations

from cairn.storage.sql import SQLStorage
from tests.storage.conftest import OpenStorage


def test_person_events_keeps_only_the_indexes_its_queries_use(open_storage: OpenStorage) -> None:
    """No index by identifier (its random keys cost the pipeline a page per event): the unmerge's
    move of an identifier's events names their person and reads them through its timeline."""
    storage = open_storage()
    assert isinstance(storage, SQLStorage)
    storage.migrate()
    storage.migrate()  # again: a migrated database is left as it is
    move = "UPDATE person_events SET person_id = 1 WHERE person_id = 2 AND identifier_id IN (3, 4)"
    if storage.dialect == "postgres":
        indexes = "SELECT indexname FROM pg_indexes WHERE tablename = 'person_events'"
        expected = {"person_events_pkey"}
        explain = "EXPLAIN "
    else:
        indexes = (
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'person_events'"
        )
        expected = set()
        explain = "EXPLAIN QUERY PLAN "
    names = {row[0] for row in storage.rows(indexes)}
    plan = " ".join(str(row[-1]) for row in storage.rows(explain + move))
    assert names == expected | {
        "person_events_timeline",
        "person_events_name",
        "person_events_person_name",
    }
    assert "person_events_timeline" in plan or "person_events_person_name" in plan, plan
