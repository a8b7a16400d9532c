"""PostgreSQL: the pipeline's staged updates (`Tx.update`) read the rows they change by primary
key, whatever the planner makes of the temporary table they are staged in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cairn.storage.people import PeopleStore, Tx
from cairn.storage.postgres import PostgresStorage

pytestmark = pytest.mark.postgres

_PERSONS = 50_000
_COUNTERS = (("last_seen_ms", "bigint"), ("events", "bigint"))


@pytest.fixture
def store(postgres_url: str) -> Iterator[PeopleStore]:
    """A migrated database holding `_PERSONS` persons of about 600 bytes (the benchmark's size),
    analyzed as autovacuum would have it."""
    storage = PostgresStorage(postgres_url)
    storage.migrate()
    people = PeopleStore(storage)
    with people.tx() as tx:
        tx.run(
            "INSERT INTO persons (id, workspace_id, traits, first_seen_ms, last_seen_ms, events, "
            "created_ms, updated_ms) SELECT g, 1, jsonb_build_object('bio', repeat('x', 500)), "
            "g, g, 1, 0, 0 FROM generate_series(1, ?) AS g",
            (_PERSONS,),
        )
        tx.run("ANALYZE persons")
    yield people
    storage.close()


def test_update_reads_persons_by_primary_key(store: PeopleStore) -> None:
    """500 persons spread over the table: updated by index, not by hashing a scan of all 50,000
    (the join the planner chose for the staged rows alone: 174 ms for 3,000 of 104,038 persons
    on the test server against 55 ms by key)."""
    ids = range(1, _PERSONS + 1, 100)
    with store.tx() as tx:
        before = _scans(tx)  # this backend's counts not yet reported may include earlier ones
        tx.update("persons", _COUNTERS, [(pid, 10**12 + pid, 7) for pid in ids])
        sequential, by_index = (now - then for now, then in zip(_scans(tx), before, strict=True))
    assert sequential == 0
    assert by_index > 0
    changed = store.rows("SELECT id, last_seen_ms FROM persons WHERE events = 7 ORDER BY id")
    assert changed == [(pid, 10**12 + pid) for pid in ids]
    assert store.rows("SELECT count(*) FROM persons WHERE events = 1") == [(_PERSONS - len(ids),)]


def _scans(tx: Tx) -> tuple[int, int]:
    """Sequential and index scans of persons counted by this backend (this transaction's too)."""
    row = tx.all(
        "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables "
        "WHERE relname = 'persons' AND schemaname = 'public'"
    )[0]
    return int(row[0]), int(row[1])
