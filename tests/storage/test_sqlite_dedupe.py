"""SQLite's dedupe key is a 64-bit hash of the messageId (migration 0008): exact all the same,
because the writer settles collisions itself, and databases from before keep their duplicates out."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import cairn.storage.sqlite as sqlite_backend
from cairn.storage.base import migration_scripts
from cairn.storage.sql import statements
from cairn.storage.sqlite import SQLiteStorage, dedupe_hash
from tests.storage.test_contract import event, ids


@pytest.fixture
def crowded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight slots a probe: distinct messageIds collide all the time."""
    real = sqlite_backend.dedupe_hash
    monkeypatch.setattr(
        sqlite_backend, "dedupe_hash", lambda m, probe=0: probe * 8 + real(m, probe) % 8
    )


@pytest.mark.usefixtures("crowded")
def test_colliding_message_ids_are_all_kept_and_duplicates_are_not(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "cairn.db")
    storage.migrate()
    first = storage.append([event(f"m{i}") for i in range(30)] + [event("m3"), event("m7")], [])
    assert (first.inserted, first.duplicates) == (30, 2)
    again = storage.append([event(f"m{i}") for i in range(25, 40)], [])  # retries and new ones
    assert (again.inserted, again.duplicates) == (10, 5)
    entries = storage.read_log(0, 100)
    assert sorted(ids(entries)) == sorted(f"m{i}" for i in range(40))
    assert again.last_seq == entries[-1].seq == storage.last_seq()
    assert storage.count_events(1) == 40
    # Other workspaces and buckets are other slots: the same ids go in again there.
    other = storage.append([event(f"m{i}", workspace=2) for i in range(5)], [])
    later = storage.append([event(f"m{i}", bucket=2) for i in range(5)], [])
    assert (other.inserted, later.inserted) == (5, 5)
    storage.close()


def test_the_hash_is_stable_and_probes_differ() -> None:
    assert dedupe_hash("abc") == dedupe_hash("abc")
    assert len({dedupe_hash("abc", probe) for probe in range(10)}) == 10
    assert -(2**63) <= dedupe_hash("\udcff lone surrogate") < 2**63


def test_a_database_from_before_keeps_its_duplicates_out(tmp_path: Path) -> None:
    path = tmp_path / "cairn.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER)")
    for version, script in migration_scripts("sqlite"):
        if version >= 8:
            break
        for statement in statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    conn.execute(
        "INSERT INTO events (workspace_id, source_id, message_id, dedupe_bucket, type, event, "
        "user_id, anonymous_id, timestamp_ms, received_ms, body) VALUES "
        "(1, 'src-1', 'old', 1, 'track', 'Thing Happened', 'u1', NULL, 1, 1, X'7B7D')"
    )
    conn.close()
    storage = SQLiteStorage(path)
    assert storage.migrate() >= 8
    retry = storage.append([event("old"), event("new")], [])
    assert (retry.inserted, retry.duplicates) == (1, 1)
    assert ids(storage.read_log(0, 10)) == ["old", "new"]
    storage.close()
