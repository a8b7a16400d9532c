"""Write-behind: a batch worked out while the one before it is still being written gives the state
that batches written one after the other give, and a write that fails or goes stale in flight
costs nothing: the batch built on it is dropped and both are redone from the database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cairn.identity.unmerge import unmerge
from cairn.pipeline.batch import Writes
from cairn.pipeline.runner import Pipeline
from cairn.profiles import read
from cairn.storage.sqlite import SQLiteStorage
from tests.pipeline.test_runner import T, merged_pair, mixed_events
from tests.support.pipeline import Log, accounts_snapshot, msg, snapshot

_EVENTS = mixed_events(600, seed=23)


def _logs(tmp_path: Path, *names: str) -> list[Log]:
    logs = []
    for name in names:
        storage = SQLiteStorage(tmp_path / f"{name}.db")
        storage.migrate()
        log = Log(storage)
        assert log.pipeline is not None
        log.pipeline.batch_size = 7  # merges and accounts cross many batch boundaries
        logs.append(log)
    return logs


def _one_at_a_time(pipeline: Pipeline) -> None:
    while pipeline.run_batch():  # every batch committed before the next is read
        pass


def _state(log: Log) -> tuple[Any, Any]:
    assert log.workspace is not None
    ws = log.workspace.id
    return snapshot(log.store, ws), accounts_snapshot(log.store, ws)


def _slow_writes(pipeline: Pipeline, before: Callable[[int], None] | None = None) -> list[int]:
    """Every write waits until the stages' thread has moved on (so batches really overlap);
    `before(n)` runs on the writer thread before the n-th write. Returns the writes' count."""
    started: list[int] = []
    original = pipeline._write

    def write(writes: Writes) -> None:
        started.append(len(started))
        time.sleep(0.002)
        if before is not None:
            before(len(started))
        original(writes)

    pipeline._write = write  # type: ignore[method-assign]
    return started


@pytest.mark.parametrize("cache_persons", [50_000, 0], ids=["cache", "no-cache"])
def test_write_behind_gives_the_state_of_batches_written_one_after_the_other(
    tmp_path: Path, cache_persons: int
) -> None:
    behind, plain = _logs(tmp_path, "behind", "plain")
    assert behind.pipeline is not None
    assert plain.pipeline is not None
    behind.pipeline.cache.max_persons = cache_persons  # 0: the unsettled state alone
    plain.pipeline.cache.max_persons = 0
    writes = _slow_writes(behind.pipeline)
    try:
        for start in range(0, len(_EVENTS), 200):
            for log in (behind, plain):
                log.send(*_EVENTS[start : start + 200])
            behind.run()
            _one_at_a_time(plain.pipeline)
        assert len(writes) >= len(_EVENTS) // 7
        assert behind.pipeline.stale_batches == 0
        assert behind.pipeline.status().lag_events == 0
        assert _state(behind) == _state(plain)
    finally:
        for log in (behind, plain):
            log.storage.close()


def test_a_write_that_fails_in_flight_is_redone_and_the_batch_built_on_it_dropped(
    tmp_path: Path,
) -> None:
    behind, plain = _logs(tmp_path, "behind", "plain")
    assert behind.pipeline is not None
    assert plain.pipeline is not None

    def fail_third(n: int) -> None:
        if n == 3:
            raise sqlite3.OperationalError("disk I/O error (injected)")

    _slow_writes(behind.pipeline, fail_third)
    try:
        for log in (behind, plain):
            log.send(*_EVENTS[:300])
        behind.run()
        _one_at_a_time(plain.pipeline)
        assert behind.pipeline.dead_letters(None) == []
        assert behind.pipeline.status().lag_events == 0
        assert _state(behind) == _state(plain)
    finally:
        for log in (behind, plain):
            log.storage.close()


def test_an_event_that_cannot_be_written_is_dead_lettered_alone(tmp_path: Path) -> None:
    (log,) = _logs(tmp_path, "one")
    assert log.pipeline is not None
    assert log.workspace is not None
    refused = 40  # the log's sequence of the event whose rows the database "refuses"
    original = Writes.run

    def run(writes: Writes, store: Any) -> None:
        if any(row[0] == refused for row in writes.person_events):
            raise sqlite3.IntegrityError("refused (injected)")
        original(writes, store)

    Writes.run = run  # type: ignore[method-assign]
    try:
        log.send(*_EVENTS[:100])
        log.run()
        letters = log.pipeline.dead_letters(None)
        assert [(d.seq, d.stage) for d in letters] == [(refused, "write")]
        applied = log.pipeline.store.rows("SELECT seq FROM person_events ORDER BY seq")
        attributed = {seq for (seq,) in applied}
        assert refused not in attributed
        assert len(attributed) >= 90  # every other event that identifies someone was applied
        assert log.pipeline.status().lag_events == 0
    finally:
        Writes.run = original  # type: ignore[method-assign]
        log.storage.close()


def test_an_unmerge_while_a_batch_is_in_flight_redoes_it(log: Log) -> None:
    """The unmerge commits between a batch's stages and its write: the write goes stale, the
    batch built on it is dropped, and both are redone on the unmerged state."""
    assert log.workspace is not None
    assert log.pipeline is not None
    ws = log.workspace.id
    person = merged_pair(log)
    log.pipeline.batch_size = 1
    log.send(
        msg("track", at=T + 3, anonymousId="x-1", event="Later Happened"),
        msg("track", at=T + 4, anonymousId="x-1", event="Later Again"),
    )

    def unmerge_first(n: int) -> None:
        if n == 1:
            unmerge(log.store, ws, person["id"], person["merged_from"][0]["merge_id"])

    _slow_writes(log.pipeline, unmerge_first)
    log.run()
    assert log.pipeline.stale_batches >= 1
    anon = read.person_json(
        log.store, ws, read.lookup(log.store, log.rules, ws, {"anonymous_id": "x-1"})
    )
    assert anon["id"] != person["id"]
    assert {"Later Happened", "Later Again"} <= set(anon["event_counts"])
    known = read.person_json(log.store, ws, person["id"])
    assert "Later Happened" not in known["event_counts"]
    assert log.pipeline.status().lag_events == 0
