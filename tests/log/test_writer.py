"""The group-commit writer: durability before the answer, shared commits, backpressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cairn.errors import Overloaded, StorageError
from cairn.ingest.messages import EventRecord, RejectedRecord
from cairn.log import Consumer, LogWriter
from cairn.storage.base import AppendResult, Storage
from cairn.storage.postgres import PostgresStorage
from cairn.storage.sqlite import SQLiteStorage


def record(n: int, workspace: int = 1) -> EventRecord:
    return EventRecord(workspace, "src", f"m-{n}", 1, "track", "Thing Happened", f"u{n}", None,
                       n, n, b'{"n":%d}' % n)  # fmt: skip


@pytest.fixture
def storage(sqlite_storage: SQLiteStorage) -> SQLiteStorage:
    return sqlite_storage


def test_append_is_committed_when_it_returns(storage: SQLiteStorage, tmp_path: Path) -> None:
    writer = LogWriter(storage)
    writer.start()
    try:
        writer.append_sync([record(1), record(2)])
        other = SQLiteStorage(tmp_path / "cairn.db")
        assert [e.message_id for e in other.read_log(0, 10)] == ["m-1", "m-2"]
        other.close()
    finally:
        writer.stop()


def test_concurrent_requests_share_commits(storage: SQLiteStorage) -> None:
    writer = LogWriter(storage)
    writer.start()
    threads = [threading.Thread(target=lambda k=k: writer.append_sync(
        [record(k * 100 + i) for i in range(50)])) for k in range(40)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.stop()
    assert storage.count_events(1) == 2000
    assert writer.stats.events == 2000
    assert writer.stats.commits < 40


def test_duplicates_are_counted_not_stored(storage: SQLiteStorage) -> None:
    writer = LogWriter(storage)
    writer.start()
    writer.append_sync([record(1)])
    result = writer.append_sync([record(1), record(2)])
    writer.stop()
    assert (result.inserted, result.duplicates) == (1, 1)
    assert storage.count_events(1) == 2


def test_backpressure_refuses_instead_of_growing(storage: SQLiteStorage) -> None:
    writer = LogWriter(storage, max_pending=100)  # not started: nothing drains
    writer.submit([record(i) for i in range(80)])
    with pytest.raises(Overloaded) as refused:
        writer.submit([record(i) for i in range(100, 130)])
    assert refused.value.retry_after >= 1
    writer.start()
    writer.stop()
    assert storage.count_events(1) == 80


class FailingStorage(SQLiteStorage):
    def append(
        self,
        events: Sequence[EventRecord],
        rejected: Sequence[RejectedRecord],
        *,
        durable: bool = True,
    ) -> AppendResult:
        raise OSError("disk full")


class FailingFlush(SQLiteStorage):
    """Commits, then cannot flush the WAL (an I/O error on fsync)."""

    def sync_log(self) -> None:
        raise OSError("I/O error on fsync")


class RecordingStorage(SQLiteStorage):
    """Notes, in order, when the append turn is released and when the WAL is flushed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[str] = []

    @contextmanager
    def append_turn(self) -> Iterator[None]:
        with super().append_turn():
            yield
        self.steps.append("turn released")

    def sync_log(self) -> None:
        super().sync_log()
        self.steps.append("flushed")


def test_storage_failure_reaches_the_caller(tmp_path: Path) -> None:
    storage = FailingStorage(tmp_path / "x.db")
    storage.migrate()
    writer = LogWriter(storage)
    writer.start()
    with pytest.raises(StorageError, match="disk full"):
        writer.append_sync([record(1)])
    assert writer.pending == 0
    writer.stop()
    storage.close()


def test_a_commit_that_cannot_be_flushed_is_an_error_and_its_retry_is_stored_once(
    tmp_path: Path,
) -> None:
    failing = FailingFlush(tmp_path / "x.db")
    failing.migrate()
    writer = LogWriter(failing)
    writer.start()
    with pytest.raises(StorageError, match="I/O error on fsync"):
        writer.append_sync([record(1)])  # committed, not known to be on disk: no 200
    assert writer.pending == 0
    writer.stop()
    failing.close()
    storage = SQLiteStorage(tmp_path / "x.db")
    writer = LogWriter(storage)
    writer.start()
    retry = writer.append_sync([record(1), record(2)])  # the client's retry
    writer.stop()
    assert (retry.inserted, retry.duplicates) == (1, 1)
    assert storage.count_events(1) == 2
    storage.close()


def test_the_writer_flushes_after_it_gives_up_the_turn_and_before_it_answers(
    tmp_path: Path,
) -> None:
    storage = RecordingStorage(tmp_path / "x.db")
    storage.migrate()
    storage.steps.clear()  # migrating wrote (in a turn of its own)
    writer = LogWriter(storage)
    writer.start()
    future = writer.submit([record(i) for i in range(5)])
    assert future.result(timeout=10).inserted == 5
    assert storage.steps[:2] == ["turn released", "flushed"]
    writer.stop()
    wal = Path(f"{storage.path}-wal")
    assert wal.exists()
    assert wal.stat().st_size > 0
    storage.close()


def test_consumer_resumes_from_its_commit(storage: SQLiteStorage) -> None:
    writer = LogWriter(storage)
    writer.start()
    writer.append_sync([record(i) for i in range(10)])
    writer.stop()
    first = Consumer(storage, "profiles")
    batch = first.poll(limit=4)
    first.commit(batch[-1].seq)
    again = Consumer(storage, "profiles")
    assert [e.message_id for e in again.poll(limit=100)] == [f"m-{i}" for i in range(4, 10)]
    assert again.lag() == 6
    with pytest.raises(ValueError, match="cannot move back"):
        again.commit(1)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_what_arrives_while_another_process_commits_joins_one_commit(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`cairn serve --workers N`: a writer waiting for the append turn (another process is
    committing) gathers everything that arrived meanwhile into its next commit."""
    mine: Storage
    other: Storage
    if backend == "sqlite":
        mine = SQLiteStorage(tmp_path / "cairn.db")
        other = SQLiteStorage(tmp_path / "cairn.db")  # its own lock file handle, as a process
    else:
        url = request.getfixturevalue("postgres_url")
        mine, other = PostgresStorage(url), PostgresStorage(url)
    mine.migrate()
    writer = LogWriter(mine)
    writer.start()
    try:
        with other.append_turn():
            futures = [writer.submit([record(n)]) for n in range(5)]
            time.sleep(0.2)
            assert not any(f.done() for f in futures), "nothing commits while the turn is taken"
        assert [f.result(timeout=10).inserted for f in futures] == [5] * 5
        assert writer.stats.commits == 1
    finally:
        writer.stop()
        other.close()
        mine.close()
