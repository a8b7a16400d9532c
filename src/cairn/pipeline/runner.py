"""The runner: reads the log from the pipeline's committed cursor and passes each event through the
stages, in log order, one batch per transaction.

Exactly once, in order: a batch's changes and the cursor's new position commit together, under a
version check on the cursor row (`StaleBatch` when another worker or an unmerge changed derived
state meanwhile; the batch is then redone from fresh state). Workers also take a lease on the
cursor, so with several workers one runs and the others stand by, taking over when its lease
lapses. Replays are safe: an event already applied (it has a `person_events` row) is skipped.

A stage that raises on one event sends that event to the dead-letter list with the error: the
batch is redone without it, so no half-applied event is ever written. `replay_dead_letters` runs
dead letters through the stages again (`cairn pipeline replay`).

Write-behind: while the log is behind, a batch's transaction runs on the pipeline's writer thread
while the next batch is worked out on the runner's. The two overlap on two cores: the database's
work (SQLite's inserts and commit, or PostgreSQL's server) releases the GIL that the stages hold.
The next batch reads what the unsettled one wrote before it reads the database (`Unsettled`), and
it commits only after it: one transaction in flight at most. If that transaction fails, the batch
built on it is dropped and both are redone from the database, as a stale batch is.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import msgspec

from cairn.errors import NotFound
from cairn.identity.rules import IdentityRules
from cairn.ingest.timestamps import now_ms
from cairn.pipeline.batch import Batch, Stats, Unsettled, Writes, write_dead_letters
from cairn.pipeline.cache import StateCache
from cairn.pipeline.event import Event
from cairn.pipeline.stages import accounts, identity, plans, profiles, timeline
from cairn.pipeline.stages.identity import Attribution
from cairn.plans.store import PlanStore
from cairn.settings import Settings
from cairn.storage.base import LogEntry
from cairn.storage.people import PIPELINE_CURSOR, CursorRow, PeopleStore, StaleBatch
from cairn.storage.sql import EVENT_COLUMNS, SQLStorage

__all__ = ["STAGES", "DeadLetter", "Pipeline", "PipelineStatus", "Runner"]

log = logging.getLogger(__name__)

Stage = Callable[[Batch, Event, Attribution | None], Attribution | None]
STAGES: tuple[tuple[str, Stage], ...] = (
    ("plans", plans.apply),
    ("identity", identity.apply),
    ("profiles", profiles.apply),
    ("accounts", accounts.apply),
    ("timeline", timeline.apply),
)
_MAX_STALE_RETRIES = 20


class PipelineStatus(msgspec.Struct):
    cursor: int
    last_seq: int
    lag_events: int
    lag_seconds: float
    dead_letters: int
    holder: str | None
    lease_until_ms: int
    updated_ms: int
    running_here: bool
    processed: int
    batches: int
    stale_batches: int


class DeadLetter(msgspec.Struct):
    id: int
    workspace_id: int
    seq: int
    stage: str
    error: str
    attempts: int
    at_ms: int
    resolved_ms: int | None


@dataclass
class _Failure(Exception):
    seq: int
    stage: str
    error: str


@dataclass
class _InFlight:
    """A batch whose transaction runs on the writer thread. It keeps no event or batch object:
    the runner turns the cyclic garbage collector back on between batches, and a young
    collection then walked the whole batch in flight (19% of the runner thread's samples)."""

    done: Future[None]
    unsettled: Unsettled
    after: int  # the log position the batch read after (a failed batch is read again from it)
    count: int  # log entries in the batch
    stats: Stats


class Pipeline:
    """The stages over one database. `run_batch` is one step; `Runner` loops it on a thread."""

    def __init__(
        self,
        storage: SQLStorage,
        rules: IdentityRules,
        *,
        batch_size: int = 500,
        stages: Sequence[tuple[str, Stage]] = STAGES,
        name: str = PIPELINE_CURSOR,
        cache_persons: int = 50_000,
    ) -> None:
        self.storage = storage
        self.store = PeopleStore(storage)
        self.plans = PlanStore(self.store)
        self.rules = rules
        self.batch_size = batch_size
        self.stages = tuple(stages)
        self.name = name
        self.totals = Stats()
        self.processed = 0
        self.batches = 0
        self.stale_batches = 0
        self._releasing = False
        self._thread_state = threading.local()
        self._sources: frozenset[str] = frozenset()
        self._sources_at = 0.0
        self.cache = StateCache(max_persons=max(cache_persons, 0))
        self._writer: ThreadPoolExecutor | None = None
        self._inflight: _InFlight | None = None
        self.store.ensure_cursor(name)

    @classmethod
    def from_settings(cls, storage: SQLStorage, settings: Settings) -> Pipeline:
        rules = IdentityRules.from_settings(
            settings.identity_junk_ids, settings.identity_max_identifiers, settings.identity_email
        )
        return cls(
            storage,
            rules,
            batch_size=settings.pipeline_batch,
            cache_persons=settings.pipeline_cache_persons,
        )

    # one batch ------------------------------------------------------------------------------
    def run_batch(self, *, behind: bool = False) -> int:
        """Process the next batch of the log; return how many log entries it consumed.

        `behind`: the batch's transaction may still be running on the writer thread when this
        returns; the next call reads through it, and `settle()` waits for it. Otherwise every
        write is committed on return. Only the thread that runs the batches may pass it."""
        with without_cyclic_gc():
            if not behind:
                self.settle()
            return self._run_batch(behind)

    def run_until_idle(self, max_batches: int | None = None) -> int:
        done = 0
        batches = 0
        try:
            while max_batches is None or batches < max_batches:
                count = self.run_batch(behind=True)
                if count == 0:
                    if self.settle():
                        break
                    continue  # the last batch met a change under it: redo it
                done += count
                batches += 1
        finally:
            self.settle()
        return done

    def settle(self) -> bool:
        """Wait for the batch in flight, if any. False if it did not commit as built: it went
        stale (the next `run_batch` redoes it) or its write failed (redone here)."""
        if self._inflight is None:
            return True
        with without_cyclic_gc():
            return self._settle()

    def _run_batch(self, behind: bool) -> int:
        self._prepare_thread()
        for attempt in range(_MAX_STALE_RETRIES):
            inflight = self._inflight
            if inflight is not None and inflight.done.done():
                self._settle()  # finished: its outcome is known now, and the next reads can see it
                inflight = self._inflight
            if inflight is not None:
                cursor = inflight.unsettled.cursor
            else:
                cursor = self.store.cursor(self.name)
            entries = self.storage.read_log(cursor.position, self.batch_size)
            if not entries:
                return 0
            try:
                if behind:
                    self._apply_behind(cursor, entries, inflight)
                    return len(entries)
                self._apply(cursor, entries, position=entries[-1].seq, cached=True)
            except StaleBatch:
                self.stale_batches += 1
                time.sleep(random.random() * 0.002 * (attempt + 1))  # two racers fall out of step
                continue
            self.processed += len(entries)
            self.batches += 1
            return len(entries)
        raise StaleBatch("the pipeline's state kept changing under the batch; retry later")

    def _apply_behind(
        self, cursor: CursorRow, entries: list[LogEntry], inflight: _InFlight | None
    ) -> None:
        """Run the stages over `entries` on top of the batch in flight, then start their writes
        once that batch has committed. `StaleBatch` when it did not: this one is dropped."""
        unsettled = inflight.unsettled if inflight is not None else None
        batch = self._staged(cursor, entries, cache=True, unsettled=unsettled)
        writes = batch.writes(entries[-1].seq, self.name)
        if inflight is not None and not self._settle():
            raise StaleBatch("the batch this one was built on did not commit as it was")
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="cairn-pipeline-writer")
        done = self._writer.submit(self._write, writes)
        self._inflight = _InFlight(
            done, writes.unsettled, cursor.position, len(entries), batch.stats
        )
        if self.cache.max_persons:
            batch.keep_in(self.cache, cursor.version + 1)

    def _prepare_thread(self) -> None:
        """This thread's connection set up for the pipeline's batches, once."""
        if not getattr(self._thread_state, "prepared", False):
            self.store.pipeline_connection()
            self._thread_state.prepared = True

    def _write(self, writes: Writes) -> None:
        """On the writer thread: the batch's transaction."""
        self._prepare_thread()
        writes.run(self.store)

    def _settle(self) -> bool:
        """Wait for the batch in flight; True if it committed as it was written (and counted).
        Stale: dropped (the loop redoes it from the database). Failed otherwise: redone here,
        where a write that fails is retried event by event, so only the event that cannot be
        written is dead-lettered."""
        inflight, self._inflight = self._inflight, None
        assert inflight is not None
        try:
            inflight.done.result()
        except StaleBatch:
            self.cache.clear()
            self.stale_batches += 1
            return False
        except Exception:
            self.cache.clear()
            log.warning("pipeline: a batch's write failed; redoing it from the database")
            entries = self.storage.read_log(inflight.after, inflight.count)
            try:
                self._apply(self.store.cursor(self.name), entries, position=entries[-1].seq)
            except StaleBatch:
                self.stale_batches += 1  # the next batch reads from the database again
                return False
            self.processed += len(entries)
            self.batches += 1
            return False
        self.processed += inflight.count
        self.batches += 1
        self._count(inflight.stats)
        return True

    def _apply(
        self, cursor: CursorRow, entries: list[LogEntry], *, position: int, cached: bool = False
    ) -> set[int]:
        """Run the stages over `entries` and commit them with the cursor at `position`.

        A failing event is dead-lettered and the batch redone without it; a batch whose write
        fails (a value the database refuses) is written one event at a time, so only the event
        that cannot be written is dead-lettered. Returns the dead-lettered sequence numbers.
        `cached`: the state cache may be used (only by the thread that runs the batches: while
        a batch is in flight the cache holds what it wrote, not what is committed).
        """
        batch = self._staged(cursor, entries, cache=cached)
        try:
            batch.flush(position, self.name)
        except StaleBatch:
            self.cache.clear()
            raise
        except Exception:
            self.cache.clear()
            if len(entries) == 1:
                log.exception("pipeline: could not write event %d", entries[0].seq)
                self._dead_letter_alone(cursor, entries[0], position)
                return {entries[0].seq}
            log.warning("pipeline: batch write failed; writing its events one by one")
            dead: set[int] = set()
            for entry in entries:
                dead |= self._apply(self.store.cursor(self.name), [entry], position=entry.seq)
            return dead
        if cached and self.cache.max_persons:
            batch.keep_in(self.cache, cursor.version + 1)
        self._count(batch.stats)
        return {seq for _ws, seq, _stage, _error in batch.dead_letters}

    def _staged(
        self,
        cursor: CursorRow,
        entries: list[LogEntry],
        *,
        cache: bool,
        unsettled: Unsettled | None = None,
    ) -> Batch:
        """The batch of `entries` with the stages run: an event a stage fails on is
        dead-lettered and the batch redone without it."""
        failed: dict[int, tuple[str, str]] = {}
        while True:
            batch = self._batch(cursor, entries, failed, cache=cache, unsettled=unsettled)
            try:
                self._run_stages(batch, failed)
            except _Failure as failure:
                failed[failure.seq] = (failure.stage, failure.error)
                continue
            return batch

    def _batch(
        self,
        cursor: CursorRow,
        entries: list[LogEntry],
        failed: dict[int, tuple[str, str]],
        *,
        cache: bool,
        unsettled: Unsettled | None = None,
    ) -> Batch:
        events: list[Event] = []
        letters: list[tuple[int, int, str, str]] = []
        for entry in entries:
            if entry.seq in failed:
                stage, error = failed[entry.seq]
                letters.append((entry.workspace_id, entry.seq, stage, error))
                continue
            try:
                events.append(Event.from_log(entry))
            except Exception as exc:
                failed[entry.seq] = ("decode", _describe(exc))
                letters.append((entry.workspace_id, entry.seq, "decode", _describe(exc)))
        requiring = self._sources_requiring_hash()
        state = self.cache if cache and self.cache.max_persons else None
        if state is not None and not state.valid_for(cursor.version):
            state = None
        batch = Batch(
            self.store, self.rules, cursor, events, requiring.__contains__, plans=self.plans,
            cache=state, unsettled=unsettled,
        )  # fmt: skip
        batch.dead_letters = letters
        wanted: dict[tuple[int, str], set[str]] = {}
        groups: dict[int, set[str]] = {}
        for ev in events:
            identity.wanted_identifiers(batch, ev, wanted)
            if (group_id := ev.group_id) is not None:
                groups.setdefault(ev.workspace_id, set()).add(group_id)
        batch.preload(wanted, groups)
        return batch

    def _run_stages(self, batch: Batch, failed: dict[int, tuple[str, str]]) -> None:
        for ev in batch.events:
            if ev.seq in batch.applied:
                batch.stats.skipped += 1
                continue
            found: Attribution | None = None
            for name, stage in self.stages:
                try:
                    found = stage(batch, ev, found)
                except Exception as exc:
                    raise _Failure(ev.seq, name, _describe(exc)) from exc
                if ev.blocked:
                    batch.stats.blocked += 1
                    break
            if self._releasing and not ev.blocked:
                batch.released.append(ev.seq)
            batch.stats.events += 1

    def _dead_letter_alone(self, cursor: CursorRow, entry: LogEntry, position: int) -> None:
        with self.store.tx() as tx:
            self.store.advance(
                tx, self.name, version=cursor.version, position=position, high_water=entry.seq
            )
            error = "the database refused the event's derived state"
            write_dead_letters(tx, [(entry.workspace_id, entry.seq, "write", error)], now_ms())

    def _count(self, s: Stats) -> None:
        t = self.totals
        t.events += s.events
        t.skipped += s.skipped
        t.unattributed += s.unattributed
        t.persons_created += s.persons_created
        t.merges += s.merges
        t.merges_refused += s.merges_refused
        t.identifiers_refused += s.identifiers_refused
        t.blocked += s.blocked

    def _sources_requiring_hash(self) -> frozenset[str]:
        """The sources that require identity verification, read at most every 5 s."""
        if time.monotonic() - self._sources_at > 5:
            rows = self.store.rows("SELECT id, require_user_hash FROM sources")
            self._sources = frozenset(row[0] for row in rows if row[1])
            self._sources_at = time.monotonic()
        return self._sources

    # dead letters ---------------------------------------------------------------------------
    def dead_letters(
        self, workspace_id: int | None, *, include_resolved: bool = False, limit: int = 100
    ) -> list[DeadLetter]:
        clauses, params = ["1 = 1"], []
        if workspace_id is not None:
            clauses.append("workspace_id = ?")
            params.append(workspace_id)
        if not include_resolved:
            clauses.append("resolved_ms IS NULL")
        rows = self.store.rows(
            "SELECT id, workspace_id, seq, stage, error, attempts, at_ms, resolved_ms "
            f"FROM dead_letters WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [DeadLetter(*row) for row in rows]

    def replay_dead_letters(
        self, workspace_id: int | None = None, ids: Sequence[int] | None = None
    ) -> dict[str, int]:
        """Run open dead letters through the stages again. Those that pass are marked resolved;
        those that fail again stay, with the new error and one more attempt."""
        letters = self.dead_letters(workspace_id, limit=100_000)
        if ids is not None:
            wanted = set(ids)
            letters = [d for d in letters if d.id in wanted]
            if missing := wanted - {d.id for d in letters}:
                raise NotFound(f"no open dead letter {sorted(missing)[0]}")
        resolved = failed = 0
        for letter in letters:
            if self._reapply(letter.seq):
                failed += 1
                continue
            with self.store.tx() as tx:
                tx.run(
                    "UPDATE dead_letters SET resolved_ms = ? WHERE id = ?", (now_ms(), letter.id)
                )
            resolved += 1
        return {"resolved": resolved, "failed": failed}

    def replay_quarantine(
        self, workspace_id: int, seqs: Sequence[int] | None = None
    ) -> dict[str, int]:
        """Run quarantined events through the stages again (after the plan was fixed): those that
        pass now are released and applied; those still blocked stay, with the new violations."""
        released = still = 0
        for seq in self.plans.quarantined_seqs(workspace_id, list(seqs) if seqs else None):
            self._releasing = True
            try:
                self._reapply(seq)
            finally:
                self._releasing = False
            open_now = self.store.rows(
                "SELECT 1 FROM quarantine WHERE seq = ? AND released_ms IS NULL", (seq,)
            )
            if open_now:
                still += 1
            else:
                released += 1
        return {"released": released, "blocked": still}

    def _reapply(self, seq: int) -> set[int]:
        """Run one logged event through the stages again, the cursor staying where it is; the
        dead-lettered sequence numbers (the event's own when every try met a stale batch)."""
        entry = self._log_entry(seq)
        for _ in range(_MAX_STALE_RETRIES):
            cursor = self.store.cursor(self.name)
            try:
                return self._apply(cursor, [entry], position=cursor.position)
            except StaleBatch:
                continue
        return {seq}

    def _log_entry(self, seq: int) -> LogEntry:
        rows = self.store.rows(f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.seq = ?", (seq,))
        if not rows:
            raise NotFound(f"event {seq} is not in the log")
        return LogEntry(*rows[0])

    # status -----------------------------------------------------------------------------------
    def status(self, *, running_here: bool = False) -> PipelineStatus:
        cursor = self.store.cursor(self.name)
        last = self.storage.last_seq()
        lag_seconds = 0.0
        if last > cursor.position:
            oldest = self.storage.read_log(cursor.position, 1)
            if oldest:
                lag_seconds = max(now_ms() - oldest[0].received_ms, 0) / 1000
        open_letters = self.store.rows(
            "SELECT count(*) FROM dead_letters WHERE resolved_ms IS NULL"
        )[0][0]
        return PipelineStatus(
            cursor=cursor.position,
            last_seq=last,
            lag_events=max(last - cursor.position, 0),
            lag_seconds=round(lag_seconds, 3),
            dead_letters=int(open_letters),
            holder=cursor.holder,
            lease_until_ms=cursor.lease_until_ms,
            updated_ms=cursor.updated_ms,
            running_here=running_here,
            processed=self.processed,
            batches=self.batches,
            stale_batches=self.stale_batches,
        )


class _CyclicGC:
    """Who holds the cyclic garbage collector off, and whether it was on before the first."""

    lock = threading.Lock()
    holds = 0
    was_enabled = True


@contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while the block runs (reference counting still frees all
    that is not in a cycle, which is everything a batch makes). A batch holds tens of thousands
    of decoded messages and rows, and the collector walked them again at every collection: 20
    of about 100 µs of CPU per event on the SQLite throughput row (docs/benchmarks.md).
    Concurrent blocks share one hold; the last to end turns the collector back on if it was."""
    with _CyclicGC.lock:
        _CyclicGC.holds += 1
        if _CyclicGC.holds == 1:
            _CyclicGC.was_enabled = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _CyclicGC.lock:
            _CyclicGC.holds -= 1
            if _CyclicGC.holds == 0 and _CyclicGC.was_enabled:
                gc.enable()


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = "; ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in frames)
    return f"{type(exc).__name__}: {exc} ({where})"


class Follower(Protocol):
    def step(self) -> bool:
        """Do a slice of work; True if there was any."""

    def next_due_ms(self) -> int | None:
        """When time alone next gives work (epoch ms), if ever."""


class Runner:
    """`Pipeline.run_batch` in a loop on a thread, holding the lease; woken by the log writer."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        lease_seconds: float = 10.0,
        idle_seconds: float = 0.2,
        holder: str | None = None,
        followers: Sequence[Follower] = (),
    ) -> None:
        self.pipeline = pipeline
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.holding = False
        self.errors = 0
        # Work that follows the pipeline in its thread, under its lease (the segment engine).
        self.followers: list[Follower] = list(followers)

    def wake(self) -> None:
        self._wake.set()

    def _idle(self) -> float:
        """How long to sleep with nothing to do: until a follower's next timer, at most idle."""
        wait = self.idle_seconds
        for follower in self.followers:
            due = follower.next_due_ms()
            if due is not None:
                wait = min(wait, max((due - now_ms()) / 1000, 0.0))
        return wait

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="cairn-pipeline", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self) -> None:
        renew_every = self.lease_seconds / 3
        renewed = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() - renewed > renew_every or not self.holding:
                    self.holding = self._lease()
                    renewed = time.monotonic()
                if not self.holding:
                    self._stop.wait(renew_every)
                    continue
                try:
                    done = self.pipeline.run_batch(behind=True)
                    if done == 0 and not self.pipeline.settle():
                        done = 1  # the last batch is to be redone: no sleep first
                    for follower in self.followers:
                        done += int(follower.step())
                except Exception:
                    self.errors += 1
                    log.exception("pipeline batch failed; retrying")
                    self._stop.wait(1.0)
                    continue
                if done == 0:
                    self._wake.wait(self._idle())
                    self._wake.clear()
        finally:
            try:
                self.pipeline.settle()
            except Exception:
                log.exception("pipeline: the last batch's write failed")
            if self.holding:
                try:
                    self.pipeline.store.release_lease(self.pipeline.name, self.holder)
                except Exception:
                    log.exception("pipeline: could not release the lease")
                self.holding = False

    def _lease(self) -> bool:
        try:
            return self.pipeline.store.take_lease(
                self.pipeline.name, self.holder, self.lease_seconds
            )
        except Exception:
            log.exception("pipeline: could not take the lease")
            return False
