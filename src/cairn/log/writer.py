"""Group commit: requests that arrive while a transaction is open share the next one.

One thread owns appends. Each request hands over its events and waits on a future that resolves
only after the transaction holding them has committed, so the collector answers 200 only for
durable events. When more than `max_pending` events wait, `append` refuses with `Overloaded` (429)
instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field

from cairn.errors import Overloaded, StorageError
from cairn.ingest.messages import EventRecord, RejectedRecord
from cairn.storage.base import AppendResult, Storage

__all__ = ["LogWriter", "WriterStats"]

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    commits: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    failures: int = 0
    last_seq: int = 0
    last_commit_ms: float = 0.0
    commit_ms_total: float = 0.0


@dataclass(slots=True)
class _Job:
    events: Sequence[EventRecord]
    rejected: Sequence[RejectedRecord]
    future: Future[AppendResult] = field(default_factory=Future)

    @property
    def size(self) -> int:
        return len(self.events) + len(self.rejected)


_STOP = object()


class LogWriter:
    def __init__(self, storage: Storage, *, max_pending: int = 200_000, max_rows: int = 20_000):
        self._storage = storage
        self._max_pending = max_pending
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stats = WriterStats()
        # Called on the writer's thread after each commit that added events (e.g. to wake the
        # pipeline); must be quick and must not raise.
        self.on_commit: list[Callable[[], None]] = []

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cairn-log-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Commit everything already handed over, then end the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def submit(
        self, events: Sequence[EventRecord], rejected: Sequence[RejectedRecord] = ()
    ) -> Future[AppendResult]:
        job = _Job(events, rejected)
        with self._lock:
            if self._pending and self._pending + job.size > self._max_pending:
                raise Overloaded(
                    f"{self._pending} events are waiting to be written; retry shortly",
                    retry_after=1,
                )
            self._pending += job.size
        self._queue.put(job)
        return job.future

    async def append(
        self, events: Sequence[EventRecord], rejected: Sequence[RejectedRecord] = ()
    ) -> AppendResult:
        return await asyncio.wrap_future(self.submit(events, rejected))

    def append_sync(
        self, events: Sequence[EventRecord], rejected: Sequence[RejectedRecord] = ()
    ) -> AppendResult:
        return self.submit(events, rejected).result()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            # With several server processes the turn may take a commit of another process to
            # come: what arrives meanwhile is gathered into this commit once it does.
            with ExitStack() as turn:
                try:
                    turn.enter_context(self._storage.append_turn())
                except Exception as exc:  # e.g. the lock file cannot be opened: fail this job
                    log.exception("could not take the log's append turn")
                    self.stats.failures += 1
                    self._settle([first], error=StorageError(f"could not store events: {exc}"))
                    continue
                jobs, stop = self._gather(first)
                result = self._commit(jobs)
            # The turn is free: the next process commits while this one waits for the disk.
            if result is not None:
                self._finish(jobs, result)
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs = [first]
        rows = first.size
        while rows < self._max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            assert isinstance(job, _Job)
            jobs.append(job)
            rows += job.size
        return jobs, False

    def _commit(self, jobs: list[_Job]) -> AppendResult | None:
        """Append the jobs' events (committed, not yet flushed: `_finish` does that); None when
        the append failed and the jobs are settled with the error."""
        events = [e for job in jobs for e in job.events]
        rejected = [r for job in jobs for r in job.rejected]
        started = time.perf_counter()
        try:
            result = self._storage.append(events, rejected, durable=False)
        except Exception as exc:
            log.exception("log append failed for %d events", len(events))
            self.stats.failures += 1
            self._settle(jobs, error=StorageError(f"could not store events: {exc}"))
            return None
        elapsed = (time.perf_counter() - started) * 1000
        stats = self.stats
        stats.commits += 1
        stats.events += result.inserted
        stats.duplicates += result.duplicates
        stats.rejected += len(rejected)
        stats.last_seq = result.last_seq
        stats.last_commit_ms = elapsed
        stats.commit_ms_total += elapsed
        return result

    def _finish(self, jobs: list[_Job], result: AppendResult) -> None:
        """Flush the commit to disk, then answer its requests: 200 means durable."""
        try:
            self._storage.sync_log()
        except Exception as exc:
            # Committed but not known to be on disk: the clients retry, and dedupe drops the
            # copies of what was in fact kept.
            log.exception("log flush failed for %d events", result.inserted)
            self.stats.failures += 1
            self._settle(jobs, error=StorageError(f"could not store events: {exc}"))
            return
        self._settle(jobs, result=result)
        if result.inserted:
            for listener in self.on_commit:
                listener()

    def _settle(
        self,
        jobs: list[_Job],
        *,
        result: AppendResult | None = None,
        error: Exception | None = None,
    ) -> None:
        with self._lock:
            self._pending -= sum(job.size for job in jobs)
        for job in jobs:
            if error is not None:
                job.future.set_exception(error)
            else:
                assert result is not None
                job.future.set_result(result)
