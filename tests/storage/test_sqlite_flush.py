"""SQLite's fsync policy for the log (docs/ingest.md, "Durability"): with `synchronous = FULL` the
log writer's connection commits with NORMAL and flushes the WAL itself after the commit
(`sync_log`), before anyone is told the events are stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cairn.storage.sqlite import SQLiteStorage
from tests.storage.test_contract import event


def _flushed_inodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    inodes: list[int] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        inodes.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    return inodes


def test_an_append_is_committed_at_once_and_flushed_by_sync_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SQLiteStorage(tmp_path / "cairn.db")
    storage.migrate()
    flushed = _flushed_inodes(monkeypatch)
    storage.append([event("a")], [], durable=False)
    assert flushed == []
    other = SQLiteStorage(tmp_path / "cairn.db")  # another process's view: committed already
    assert [e.message_id for e in other.read_log(0, 10)] == ["a"]
    storage.sync_log()
    wal = Path(f"{storage.path}-wal")
    assert flushed == [wal.stat().st_ino]
    storage.append([event("b")], [])  # durable (the default): flushed before it returns
    assert len(flushed) == 2
    other.close()
    storage.close()


def test_sync_log_follows_a_wal_that_was_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SQLiteStorage(tmp_path / "cairn.db")
    storage.migrate()
    storage.append([event("a")], [])
    stale = os.open(tmp_path / "stale", os.O_RDWR | os.O_CREAT)
    storage._local.wal_fd = stale  # as if the WAL had been removed and created again
    flushed = _flushed_inodes(monkeypatch)
    storage.append([event("b")], [])
    assert flushed == [Path(f"{storage.path}-wal").stat().st_ino]
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert str((tmp_path / "stale").resolve()) not in open_files  # closed, not leaked
    storage.close()


@pytest.mark.parametrize(("setting", "writer_mode", "flushes"), [("FULL", 1, True),
                         ("NORMAL", 1, False), ("EXTRA", 3, False)])  # fmt: skip
def test_only_full_moves_the_flush_after_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, writer_mode: int, flushes: bool
) -> None:
    storage = SQLiteStorage(tmp_path / "cairn.db", synchronous=setting)
    storage.migrate()
    flushed = _flushed_inodes(monkeypatch)
    storage.append([event("a")], [])
    assert storage._connection().execute("PRAGMA synchronous").fetchone()[0] == writer_mode
    assert bool(flushed) == flushes
    storage.close()
