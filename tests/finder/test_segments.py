"""Live segments on every backend: membership follows events, windows expire on their own, entering
and leaving reach the timeline and the signals, backfill fills new segments from history."""

from __future__ import annotations

from typing import Any

import pytest

from cairn.errors import Conflict, NotFound
from cairn.finder.segments import SegmentEngine, Segments
from cairn.finder.tree import from_json
from cairn.ingest.timestamps import now_ms
from tests.support.pipeline import Log, msg

DAY = 86_400_000


def _settle(log: Log, engine: SegmentEngine) -> None:
    log.run()
    while engine.step():
        pass


def _members(log: Log, segments: Segments, segment_id: int) -> set[str]:
    assert log.workspace is not None
    rows = segments.members(log.workspace.id, segment_id, limit=1000, cursor=None)["data"]
    ids = {row["id"] for row in rows}
    return {
        value
        for pid, value in log.store.rows(
            "SELECT person_id, value FROM identifiers WHERE kind = 'user_id'"
        )
        if pid in ids
    }


def _segment(log: Log, name: str, condition: dict[str, Any]) -> int:
    assert log.workspace is not None
    return Segments(log.store).create(log.workspace.id, name, from_json(condition), name).id


def test_membership_follows_events_and_reaches_timeline_and_signals(log: Log) -> None:
    engine = SegmentEngine(log.store)
    segments = engine.segments
    now = now_ms()
    sid = _segment(log, "Buyers", {"did": "Order Completed", "count": {"op": "at_least", "n": 2},
                                   "window": {"last": 30, "unit": "days"}})  # fmt: skip
    log.send(msg("track", at=now - DAY, userId="ann", event="Order Completed"))
    _settle(log, engine)
    assert _members(log, segments, sid) == set()
    log.send(msg("track", at=now - 2 * DAY, userId="ann", event="Order Completed"))
    _settle(log, engine)
    assert _members(log, segments, sid) == {"ann"}
    kinds = [r[0] for r in log.store.rows("SELECT kind FROM signals ORDER BY id")]
    assert kinds == ["entered_segment"]
    history = log.store.rows("SELECT kind FROM person_history WHERE kind = 'entered_segment'")
    assert len(history) == 1


def test_windows_expire_on_their_own(log: Log) -> None:
    """The 2nd order is 30 days old in a moment: no event arrives, and ann leaves."""
    engine = SegmentEngine(log.store)
    now = now_ms()
    sid = _segment(log, "Recent Buyers", {"did": "Order Completed", "count": {"op": "at_least", "n": 2},
                                          "window": {"last": 30, "unit": "days"}})  # fmt: skip
    log.send(
        msg("track", at=now - DAY, userId="ann", event="Order Completed"),
        msg("track", at=now - 30 * DAY + 1500, userId="ann", event="Order Completed"),
    )
    _settle(log, engine)
    assert _members(log, engine.segments, sid) == {"ann"}
    due = engine.next_due_ms()
    assert due is not None
    assert now + 1000 <= due <= now + 2000
    import time

    time.sleep(max(due - now_ms(), 0) / 1000 + 0.05)
    assert engine.step()
    assert _members(log, engine.segments, sid) == set()
    kinds = [r[0] for r in log.store.rows("SELECT kind FROM signals ORDER BY id")]
    assert kinds == ["entered_segment", "left_segment"]


def test_backfill_fills_a_new_segment_from_history(log: Log) -> None:
    engine = SegmentEngine(log.store)
    now = now_ms()
    log.send(*[
        msg("identify", at=now - i, userId=f"u{i}", traits={"plan": "pro" if i % 3 == 0 else "free"})
        for i in range(1, 1300)
    ])  # fmt: skip
    log.run()
    with log.store.tx() as tx:  # as if processed before the segment existed
        tx.run("DELETE FROM dirty_persons")
    sid = _segment(log, "Pro", {"trait": "plan", "op": "=", "value": "pro"})
    assert log.workspace is not None
    state = engine.segments.get(log.workspace.id, sid)
    assert state.backfill_state == "pending"
    engine.step()
    assert engine.segments.get(log.workspace.id, sid).backfill_total == 1299
    while engine.step():
        pass
    state = engine.segments.get(log.workspace.id, sid)
    assert (state.backfill_state, state.backfill_done) == ("done", 1299)
    assert engine.segments.member_count(sid) == len([i for i in range(1, 1300) if i % 3 == 0])


def test_segments_referring_to_segments(log: Log) -> None:
    engine = SegmentEngine(log.store)
    now = now_ms()
    pro = _segment(log, "Pro", {"trait": "plan", "op": "=", "value": "pro"})
    vip = _segment(log, "Pro Buyers", {"and": [{"in_segment": "Pro"},
                                               {"did": "Order Completed"}]})  # fmt: skip
    log.send(
        msg("identify", at=now, userId="a", traits={"plan": "pro"}),
        msg("track", at=now, userId="a", event="Order Completed"),
        msg("track", at=now, userId="b", event="Order Completed"),
    )
    _settle(log, engine)
    assert _members(log, engine.segments, pro) == {"a"}
    assert _members(log, engine.segments, vip) == {"a"}
    log.send(msg("identify", at=now + 1, userId="a", traits={"plan": "free"}))
    _settle(log, engine)
    assert _members(log, engine.segments, vip) == set()
    assert log.workspace is not None
    with pytest.raises(Conflict):
        engine.segments.update(log.workspace.id, pro, name=None, text=None,
                               condition=from_json({"in_segment": "Pro Buyers"}))  # fmt: skip
    with pytest.raises(Conflict):
        engine.segments.delete(log.workspace.id, pro)
    with pytest.raises(NotFound):
        _segment(log, "Dangling", {"in_segment": "Nope"})
    with pytest.raises(Conflict):
        _segment(log, "Pro", {"trait": "x", "op": "exists"})


def test_merged_person_leaves_and_survivor_is_reevaluated(log: Log) -> None:
    engine = SegmentEngine(log.store)
    now = now_ms()
    sid = _segment(log, "Viewers", {"did": "Product Viewed"})
    log.send(
        msg("track", at=now, anonymousId="visitor-1", event="Product Viewed"),
        msg("identify", at=now, userId="zed"),
    )
    _settle(log, engine)
    before = log.store.rows("SELECT person_id FROM segment_members WHERE segment_id = ?", (sid,))
    log.send(msg("identify", at=now + 1, userId="zed", anonymousId="visitor-1"))
    _settle(log, engine)
    after = log.store.rows("SELECT person_id FROM segment_members WHERE segment_id = ?", (sid,))
    assert len(before) == len(after) == 1
    assert before != after
    assert _members(log, engine.segments, sid) == {"zed"}


BACKFILLED = [
    {"did": "Order Completed", "count": {"op": "at_least", "n": 2},
     "window": {"last": 3, "unit": "days"}},
    {"and": [{"trait": "plan", "op": "=", "value": "pro"},
             {"did_not": "Order Completed", "window": {"last": 2, "unit": "days"}}]},
    {"profile": "last_seen", "op": "within_last", "value": {"amount": 2, "unit": "days"}},
    {"or": [{"profile": "first_seen", "op": "more_than_ago", "value": {"amount": 3, "unit": "days"}},
            {"trait": "plan", "op": "exists"}]},
    {"trait": "signup", "op": "within_last", "value": {"amount": 5, "unit": "days"}},
    {"account_trait": "tier", "op": "=", "value": "gold"},
]  # fmt: skip


def test_backfill_matches_the_evaluator_person_by_person(log: Log) -> None:
    """The bulk backfill (compiled SQL, timers from first/last seen and rolling windows) leaves
    the members and timers the evaluator gives each person."""
    from cairn.finder.evaluate import evaluate
    from cairn.finder.segments import load_people

    now = now_ms()
    for i, user in enumerate(["ann", "bob", "cat", "dan", "eve"]):
        traits = {"plan": "pro" if i % 2 else "free", "signup": now - i * DAY}
        log.send(msg("identify", at=now - (i + 1) * DAY, userId=user, traits=traits))
        log.send(msg("group", at=now - DAY, userId=user, groupId=f"g{i % 2}",
                     traits={"tier": "gold" if i % 2 else "tin"}))  # fmt: skip
        for k in range(i):
            log.send(msg("track", at=now - k * DAY - 1000, userId=user, event="Order Completed"))
    engine = SegmentEngine(log.store)
    _settle(log, engine)
    ids = [row[0] for row in log.store.rows("SELECT id FROM persons WHERE merged_into IS NULL")]
    for n, condition in enumerate(BACKFILLED):
        sid = _segment(log, f"s{n}", condition)
        _settle(log, engine)
        cond = from_json(condition)
        people = load_people(log.store, ids, [cond], now_ms())
        expected = {pid: evaluate(cond, data, now_ms()) for pid, data in people.items() if data}
        members = {r[0] for r in log.store.rows(
            "SELECT person_id FROM segment_members WHERE segment_id = ?", (sid,))}  # fmt: skip
        assert members == {pid for pid, (ok, _) in expected.items() if ok}, condition
        timers = {r[0] for r in log.store.rows(
            "SELECT person_id FROM segment_timers WHERE segment_id = ?", (sid,))}  # fmt: skip
        assert timers == {pid for pid, (_, due) in expected.items() if due}, condition


def test_a_change_re_evaluates_only_the_segments_it_can_affect(log: Log) -> None:
    engine = SegmentEngine(log.store)
    segments = engine.segments
    now = now_ms()
    pro = _segment(log, "Pro", {"trait": "plan", "op": "=", "value": "pro"})
    buyers = _segment(
        log, "Buyers", {"did": "Order Completed", "window": {"last": 7, "unit": "days"}}
    )
    log.send(msg("identify", at=now - DAY, userId="ann", traits={"plan": "free"}))
    _settle(log, engine)
    assert _members(log, segments, pro) == _members(log, segments, buyers) == set()
    log.send(msg("page", at=now - 2000, userId="ann"))  # seen once by the engine: both segments
    _settle(log, engine)
    before = engine.evaluations
    log.send(msg("track", at=now - 1000, userId="ann", event="Order Completed"))
    _settle(log, engine)
    assert _members(log, segments, buyers) == {"ann"}
    assert engine.evaluations - before == 1  # Buyers only: the traits did not change
    log.send(msg("identify", at=now, userId="ann", traits={"plan": "pro"}))
    _settle(log, engine)
    assert _members(log, segments, pro) == {"ann"}
    log.send(msg("track", at=now, anonymousId="a-1", event="Order Completed"))
    _settle(log, engine)
    assert segments.member_count(buyers) == 2
    log.send(msg("identify", at=now, userId="ann", anonymousId="a-1"))  # a merge
    _settle(log, engine)
    assert segments.member_count(buyers) == 1
    assert _members(log, segments, buyers) == {"ann"}
