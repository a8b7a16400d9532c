"""The state cache: batches that take identifiers and persons from it give the same state as
batches that read everything from the database, across merges, unmerges and failed batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cairn.identity.unmerge import unmerge
from cairn.profiles import read
from cairn.storage.sqlite import SQLiteStorage
from tests.pipeline.test_runner import T, mixed_events
from tests.support.pipeline import Log, accounts_snapshot, msg, snapshot


def _uncached(log: Log) -> None:
    """Run the log with a cache that is never valid (every batch reads the database)."""
    assert log.pipeline is not None
    log.pipeline.cache.valid_for = lambda version: False  # type: ignore[method-assign]


def test_cached_batches_give_the_state_of_uncached_ones(tmp_path: Path) -> None:
    """The same log in the same batches, on two databases: one pipeline keeps its cache."""
    logs = []
    for name in ("cached", "plain"):
        storage = SQLiteStorage(tmp_path / f"{name}.db")
        storage.migrate()
        logs.append(Log(storage))
    cached, plain = logs
    assert cached.pipeline is not None
    assert plain.pipeline is not None
    cached.pipeline.batch_size = plain.pipeline.batch_size = 7
    _uncached(plain)
    events = mixed_events(600, seed=11)
    try:
        for start in range(0, 600, 150):
            for log in logs:
                log.send(*events[start : start + 150])
                log.run()
        assert cached.pipeline.cache.hits > 0
        assert cached.workspace is not None
        assert plain.workspace is not None
        a, b = cached.workspace.id, plain.workspace.id
        assert snapshot(cached.store, a) == snapshot(plain.store, b)
        assert accounts_snapshot(cached.store, a) == accounts_snapshot(plain.store, b)
    finally:
        for log in logs:
            log.storage.close()


def _person(log: Log, **ids: str) -> dict[str, Any]:
    assert log.workspace is not None
    ws = log.workspace.id
    return read.person_json(log.store, ws, read.lookup(log.store, log.rules, ws, ids))


def test_after_an_unmerge_the_cache_is_not_used(log: Log) -> None:
    assert log.workspace is not None
    log.send(
        msg("page", at=T, anonymousId="x-1"),
        msg("identify", at=T + 1, userId="y"),
        msg("identify", at=T + 2, anonymousId="x-1", userId="y"),
    )
    log.run()
    person = _person(log, user_id="y")
    unmerge(log.store, log.workspace.id, person["id"], person["merged_from"][0]["merge_id"])
    log.send(msg("track", at=T + 3, anonymousId="x-1", event="Later Happened"))
    log.run()
    anon = _person(log, anonymous_id="x-1")
    assert anon["id"] != person["id"]
    assert "Later Happened" in anon["event_counts"]
    assert "Later Happened" not in _person(log, user_id="y")["event_counts"]


def test_a_merge_moves_cached_identifiers_the_batch_did_not_load(log: Log) -> None:
    """An anonymous person's second id, cached by an earlier batch, follows the merge."""
    log.send(
        msg("page", at=T, anonymousId="a-1"),
        msg("alias", at=T + 1, previousId="a-1", userId="old-id"),
        msg("identify", at=T + 1, userId="u-1"),
    )
    log.run()
    assert _person(log, anonymous_id="a-1")["id"] != _person(log, user_id="u-1")["id"]
    log.send(msg("alias", at=T + 2, previousId="old-id", userId="u-1"))
    log.run()
    log.send(msg("track", at=T + 3, anonymousId="a-1", event="Seen Again"))
    log.run()
    person = _person(log, user_id="u-1")
    assert person["id"] == _person(log, anonymous_id="a-1")["id"]
    assert "Seen Again" in person["event_counts"]


def test_a_cache_of_zero_persons_is_off(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "off.db")
    storage.migrate()
    log = Log(storage)
    assert log.pipeline is not None
    log.pipeline.cache.max_persons = 0  # `pipeline_cache_persons = 0`
    log.pipeline.batch_size = 7
    try:
        for start in range(0, 60, 20):
            log.send(*mixed_events(60, seed=5)[start : start + 20])
            log.run()
        assert (log.pipeline.cache.hits, log.pipeline.cache.person(1)) == (0, None)
        assert log.workspace is not None
        assert snapshot(log.store, log.workspace.id)  # the events were applied all the same
    finally:
        storage.close()
