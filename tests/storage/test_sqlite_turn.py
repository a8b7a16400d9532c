"""Every SQLite write transaction queues for the write lock on the log writers' flock, so a
pipeline batch takes its turn among the workers' appends instead of polling SQLite's lock."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from cairn.storage.sqlite import SQLiteStorage


def test_a_write_transaction_waits_for_the_turn_another_process_holds(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "x.db")
    storage.migrate()
    # another process's turn: its own open file description of the same lock file
    fd = os.open(f"{storage.path}-append", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    done = threading.Event()

    def write() -> None:
        with storage.transaction() as conn:
            conn.execute("INSERT INTO workspaces (name, created_ms) VALUES ('w', 1)")
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert not done.wait(0.3)  # queued behind the turn, not failing, not writing
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert done.wait(10)
    writer.join()
    assert storage.rows("SELECT count(*) FROM workspaces WHERE name = 'w'") == [(1,)]
    storage.close()
