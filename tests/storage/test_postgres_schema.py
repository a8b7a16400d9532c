"""PostgreSQL's own schema choices (migrations/postgres/0008 on): the indexes the pipeline writes."""

from __future__ import annotations

import pytest

from cairn.storage.postgres import PostgresStorage

pytestmark = pytest.mark.postgres


def test_person_events_keeps_only_the_indexes_its_queries_use(postgres_url: str) -> None:
    """No index by identifier (its random keys cost the pipeline a page per event; the unmerge
    finds an identifier's events through its person), every one the reads use."""
    storage = PostgresStorage(postgres_url)
    try:
        storage.migrate()
        storage.migrate()  # again: a migrated database is left as it is
        names = {
            row[0]
            for row in storage.rows(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'person_events'"
            )
        }
    finally:
        storage.close()
    assert names == {
        "person_events_pkey",
        "person_events_timeline",
        "person_events_name",
        "person_events_person_name",
    }
