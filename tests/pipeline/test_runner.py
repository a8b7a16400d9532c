"""The runner: exactly once and in order across workers, replays, dead letters, lag."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from cairn.pipeline.batch import Batch
from cairn.pipeline.event import Event
from cairn.pipeline.runner import STAGES, Pipeline, Runner
from cairn.pipeline.stages.identity import Attribution
from cairn.storage.people import StaleBatch
from cairn.storage.sql import SQLStorage
from tests.support.pipeline import Log, accounts_snapshot, msg, snapshot
from tests.support.waiting import wait_for

T = 1_767_225_600_000


def mixed_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        person = rng.randrange(40)
        anon = f"a-{person}-{rng.randrange(2)}"
        kind = rng.random()
        at = T + rng.randrange(100_000)
        if kind < 0.2:
            out.append(msg("identify", at=at, anonymousId=anon, userId=f"u-{person}",
                           traits={"n": i, "plan": rng.choice(["a", "b", None])}))  # fmt: skip
        elif kind < 0.3:
            out.append(msg("group", at=at, userId=f"u-{person}", groupId=f"g-{person % 5}",
                           traits={"size": rng.randrange(9)}))  # fmt: skip
        elif kind < 0.35:
            out.append(msg("alias", at=at, previousId=anon, userId=f"u-{person}"))
        else:
            out.append(msg("track", at=at, anonymousId=anon, event="Order Completed",
                           properties={"revenue": rng.randrange(100)},
                           context={"groupId": f"g-{person % 5}"}))  # fmt: skip
    return out


def test_rewinding_and_replaying_gives_the_same_state(log: Log) -> None:
    assert log.workspace is not None
    log.send(*mixed_events(400))
    log.run()
    ws = log.workspace.id
    people, accounts = snapshot(log.store, ws), accounts_snapshot(log.store, ws)
    for position in (0, 137, 399):
        log.store.rewind(position)
        log.run()
        assert snapshot(log.store, ws) == people
        assert accounts_snapshot(log.store, ws) == accounts
    assert log.store.cursor().position == log.storage.last_seq()


def test_a_failing_stage_dead_letters_the_event_and_spares_its_neighbours(log: Log) -> None:
    broken = {"on": True}

    def fragile(batch: Batch, ev: Event, found: Attribution | None) -> Attribution | None:
        if broken["on"] and ev.event == "Boom Happened":
            raise RuntimeError("stage bug")
        return found

    assert log.pipeline is not None
    assert log.workspace is not None
    log.pipeline = Pipeline(
        log.storage, log.rules, stages=[*STAGES[:2], ("fragile", fragile), *STAGES[2:]]
    )
    log.send(
        msg("track", at=T, userId="u", event="Before Happened"),
        msg("track", at=T + 1, userId="u", event="Boom Happened"),
        msg("track", at=T + 2, userId="u", event="After Happened"),
    )
    log.run()
    (letter,) = log.pipeline.dead_letters(log.workspace.id)
    assert letter.stage == "fragile"
    assert "RuntimeError: stage bug" in letter.error
    people = list(snapshot(log.store, log.workspace.id).values())
    assert people[0]["events"] == 2  # the failing event left nothing half-applied
    assert set(people[0]["event_counts"]) == {"Before Happened", "After Happened"}
    assert log.pipeline.replay_dead_letters(log.workspace.id) == {"resolved": 0, "failed": 1}
    assert log.pipeline.dead_letters(log.workspace.id)[0].attempts == 2
    broken["on"] = False
    assert log.pipeline.replay_dead_letters(log.workspace.id) == {"resolved": 1, "failed": 0}
    assert log.pipeline.dead_letters(log.workspace.id) == []
    people = list(snapshot(log.store, log.workspace.id).values())
    assert people[0]["events"] == 3
    # replaying again is harmless
    assert log.pipeline.replay_dead_letters(log.workspace.id) == {"resolved": 0, "failed": 0}


def test_an_unreadable_stored_message_is_dead_lettered(log: Log) -> None:
    assert log.workspace is not None
    assert log.pipeline is not None
    records = log.records([msg("track", at=T, userId="u", event="Fine Happened")] * 2)
    records[1] = type(records[1])(*[*list(records[1].__struct_fields__ and
                                          [getattr(records[1], f) for f in records[1].__struct_fields__][:-1]), b"[1, 2]"])  # fmt: skip
    records[1].message_id = "other"
    log.storage.append(records, [])
    log.run()
    (letter,) = log.pipeline.dead_letters(log.workspace.id)
    assert letter.stage == "decode"
    assert log.store.cursor().position == log.storage.last_seq()


def test_status_reports_lag(log: Log) -> None:
    assert log.pipeline is not None
    log.send(*mixed_events(30))
    status = log.pipeline.status()
    assert status.lag_events == 30
    assert status.lag_seconds >= 0
    log.run()
    status = log.pipeline.status()
    assert (status.lag_events, status.lag_seconds, status.cursor) == (0, 0.0, status.last_seq)


def merged_pair(log: Log) -> dict[str, Any]:
    """A browser's anonymous person merged into user "y" (whose person is returned) by an
    identify carrying both ids."""
    from cairn.profiles import read

    assert log.workspace is not None
    ws = log.workspace.id
    log.send(
        msg("page", at=T, anonymousId="x-1"),
        msg("identify", at=T + 1, userId="y"),
        msg("identify", at=T + 2, anonymousId="x-1", userId="y"),
    )
    log.run()
    return read.person_json(log.store, ws, read.lookup(log.store, log.rules, ws, {"user_id": "y"}))


def test_an_unmerge_during_a_batch_makes_the_batch_redo(log: Log) -> None:
    """The cursor's version check: a batch computed before an unmerge is not written over it."""
    from cairn.identity.unmerge import unmerge
    from cairn.profiles import read

    assert log.workspace is not None
    assert log.pipeline is not None
    ws = log.workspace.id
    person = merged_pair(log)
    log.send(msg("track", at=T + 3, anonymousId="x-1", event="Later Happened"))
    pipeline = log.pipeline
    original = pipeline._batch

    def unmerge_meanwhile(*args: Any, **kwargs: Any) -> Batch:
        batch = original(*args, **kwargs)
        if not getattr(unmerge_meanwhile, "done", False):
            unmerge_meanwhile.done = True  # type: ignore[attr-defined]
            unmerge(log.store, ws, person["id"], person["merged_from"][0]["merge_id"])
        return batch

    pipeline._batch = unmerge_meanwhile  # type: ignore[method-assign]
    log.run()
    assert pipeline.stale_batches == 1
    anon = read.person_json(
        log.store, ws, read.lookup(log.store, log.rules, ws, {"anonymous_id": "x-1"})
    )
    assert anon["id"] != person["id"]
    assert "Later Happened" in anon["event_counts"]


def test_runner_thread_follows_the_log_and_hands_over_the_lease(
    log: Log, second: SQLStorage
) -> None:
    assert log.workspace is not None
    first = Runner(Pipeline(log.storage, log.rules), lease_seconds=0.6, idle_seconds=0.05)
    standby = Runner(Pipeline(second, log.rules), lease_seconds=0.6, idle_seconds=0.05)
    first.start()
    time.sleep(0.2)
    standby.start()
    try:
        log.send(*mixed_events(50, seed=1))
        _wait(lambda: log.store.cursor().position == log.storage.last_seq())
        assert first.holding
        assert not standby.holding
        first.stop()
        log.send(*mixed_events(50, seed=2))
        _wait(lambda: log.store.cursor().position == log.storage.last_seq())
        assert standby.holding
    finally:
        first.stop()
        standby.stop()
    count = log.store.rows("SELECT count(*) FROM person_events")[0][0]
    total = sum(p["events"] for p in snapshot(log.store, log.workspace.id).values())
    assert count == total == 100 - log.pipeline.totals.unattributed  # type: ignore[union-attr]


def _wait(condition: Any, timeout: float = 20.0) -> None:
    wait_for(condition, timeout)


@pytest.mark.postgres
def test_two_workers_on_postgres_never_double_apply(postgres_url: str, tmp_path: Any) -> None:
    """Two workers race over one log with no lease (every batch contested): each event is applied
    exactly once, and the state equals one worker's over the same log."""
    from cairn.storage.postgres import PostgresStorage

    main = PostgresStorage(postgres_url)
    main.migrate()
    workers = [PostgresStorage(postgres_url), PostgresStorage(postgres_url)]
    log = Log(main)
    assert log.workspace is not None
    pipelines = [Pipeline(s, log.rules, batch_size=20) for s in workers]
    events = mixed_events(600, seed=3)
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(pipeline: Pipeline) -> None:
        try:
            while not stop.is_set():
                try:
                    if pipeline.run_batch() == 0:
                        time.sleep(0.005)
                except StaleBatch:
                    continue  # lost every race of a round: the Runner retries the same way
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in pipelines]
    for thread in threads:
        thread.start()
    try:
        for start in range(0, len(events), 50):
            log.send(*events[start : start + 50])
        _wait(lambda: log.store.cursor().position == main.last_seq(), timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert sum(p.stale_batches for p in pipelines) > 0, "the workers really contended"
    assert sum(p.processed for p in pipelines) == len(events)
    concurrent = snapshot(log.store, log.workspace.id)
    concurrent_accounts = accounts_snapshot(log.store, log.workspace.id)
    assert log.store.rows("SELECT count(*) FROM person_events")[0][0] == sum(
        p["events"] for p in concurrent.values()
    )
    # the same log, one worker, from scratch
    with log.store.tx() as tx:
        for table in ("persons", "identifiers", "person_events", "merges", "person_history",
                      "accounts", "account_members", "account_events", "dead_letters"):  # fmt: skip
            tx.run(f"DELETE FROM {table}")
        tx.run("UPDATE cursors SET position = 0, high_water = 0")
    Pipeline(main, log.rules).run_until_idle()
    assert snapshot(log.store, log.workspace.id) == concurrent
    assert accounts_snapshot(log.store, log.workspace.id) == concurrent_accounts
    for storage in (main, *workers):
        storage.close()


def test_text_with_nul_is_applied_on_every_backend(log: Log) -> None:
    """PostgreSQL text cannot hold U+0000: derived rows store U+FFFD instead (group ids here)."""
    log.send(
        msg("identify", at=T, userId="u-nul", traits={"note": "a\x00b"}),
        msg("group", at=T + 1, userId="u-nul", groupId="g-1", traits={"n": "x\x00"}),
        msg("track", at=T + 2, userId="u-nul", event="Plain", context={"groupId": "g\x001"}),
    )
    log.run()
    assert log.pipeline is not None
    assert log.pipeline.dead_letters(None) == []
    groups = {row[0] for row in log.store.rows("SELECT group_id FROM account_events")}
    assert groups in ({"g-1", "g\x001"}, {"g-1", "g\ufffd1"})
