"""The engine over a real pipeline on every backend: triggers, audience, frequency, goal and exit,
waits, branches, fed-back events (and the loop they must not make), restarts."""

from __future__ import annotations

import time
from typing import Any

from cairn.automations.engine import AutomationEngine
from cairn.finder.segments import SegmentEngine
from cairn.storage.people import decode_json
from tests.automations.conftest import Harness, make_engine
from tests.support.pipeline import msg


def now() -> int:
    return int(time.time() * 1000)


def track(user: str, event: str, **properties: Any) -> dict[str, Any]:
    return msg("track", at=now(), userId=user, event=event, properties=properties)


def identify(user: str, **traits: Any) -> dict[str, Any]:
    return msg("identify", at=now(), userId=user, traits=traits)


def automation(**fields: Any) -> dict[str, Any]:
    return {"name": "a", "state": "live", "trigger": {"event": "Order Completed"},
            "steps": [{"message": {"title": "hi"}}], **fields}  # fmt: skip


def test_event_trigger_with_where_and_audience(harness: Harness) -> None:
    aid = harness.create(automation(trigger={"event": "Order Completed", "where": "total > 100"},
                                    audience='plan = "pro"'))  # fmt: skip
    harness.log.send(identify("u1", plan="pro"), identify("u2", plan="free"))
    harness.log.send(track("u1", "Order Completed", total=50), track("u1", "Order Completed",
                     total=150), track("u2", "Order Completed", total=500))  # fmt: skip
    harness.until(lambda: harness.states(aid) == ["completed"])
    run_id = harness.runs(aid)[0][0]
    assert harness.steps(run_id) == [("0", "stored")]
    content = harness.log.store.rows("SELECT content FROM in_app_messages")
    assert len(content) == 1


def test_only_events_after_going_live_trigger(harness: Harness) -> None:
    aid = harness.create(automation(state="draft"))
    harness.log.send(track("u1", "Order Completed"))
    harness.turn()
    harness.automations.set_state(harness.workspace_id, aid, "live")
    harness.turn()
    assert harness.runs(aid) == []
    harness.log.send(track("u1", "Order Completed"))
    harness.until(lambda: harness.states(aid) == ["completed"])
    harness.automations.set_state(harness.workspace_id, aid, "paused")
    harness.log.send(track("u1", "Order Completed"))
    harness.turn()
    assert harness.states(aid) == ["completed"]


def test_frequency_policies(harness: Harness) -> None:
    ids = {
        policy: harness.create(automation(name=policy, frequency=policy))
        for policy in ("every_time", "once", "once_per:1h", "max:2")
    }
    for _ in range(3):
        harness.log.send(track("u1", "Order Completed"))
        harness.turn()
    harness.log.send(track("u2", "Order Completed"))
    harness.until(lambda: len(harness.runs(ids["every_time"])) == 4)
    counts = {policy: len(harness.runs(aid)) for policy, aid in ids.items()}
    assert counts == {"every_time": 4, "once": 2, "once_per:1h": 2, "max:2": 3}


def test_goal_converts_and_exit_exits_during_a_wait(harness: Harness) -> None:
    aid = harness.create(automation(goal='did "Upgraded"', exit="unsubscribed = true",
                                    steps=[{"wait": "1h"}, {"message": {"t": 1}}]))  # fmt: skip
    harness.log.send(identify("u1"), identify("u2"), identify("u3"))
    harness.log.send(*(track(u, "Order Completed") for u in ("u1", "u2", "u3")))
    harness.until(lambda: harness.states(aid) == ["waiting"] * 3)
    harness.log.send(track("u1", "Upgraded"), identify("u2", unsubscribed=True))
    harness.until(lambda: sorted(harness.states(aid)) == ["converted", "exited", "waiting"])
    counts = harness.automations.counts(aid)
    assert (counts["entered"], counts["converted"], counts["exited"]) == (3, 1, 1)
    kinds = [r[0] for r in harness.log.store.rows("SELECT kind FROM person_history ORDER BY id")]
    assert kinds.count("automation_entered") == 3
    assert "automation_converted" in kinds
    assert "automation_exited" in kinds


def test_wait_until_skips_meets_and_times_out(harness: Harness) -> None:
    aid = harness.create(automation(steps=[{"wait_until": "verified = true", "at_most": "2s",
        "then": [{"set_traits": {"path": "then"}}], "else": [{"set_traits": {"path": "else"}}]}]))  # fmt: skip
    harness.log.send(identify("done", verified=True), identify("later"), identify("never"))
    harness.log.send(*(track(u, "Order Completed") for u in ("done", "later", "never")))
    harness.until(lambda: len(harness.runs(aid)) == 3)
    harness.log.send(identify("later", verified=True))
    harness.until(lambda: harness.states(aid) == ["completed"] * 3, timeout=20)
    outcomes = [harness.steps(run[0])[-2][1] for run in harness.runs(aid)]
    assert outcomes == ["skipped", "met", "timed_out"]
    traits = {
        user: decode_json(found)
        for user, found in harness.log.store.rows(
            "SELECT i.value, p.traits FROM persons p JOIN identifiers i ON i.person_id = p.id"
        )
    }
    assert traits["done"]["path"] == "then"
    assert traits["never"]["path"] == "else"


def test_branch_and_track_cannot_loop(harness: Harness) -> None:
    aid = harness.create(automation(steps=[
        {"branch": 'plan = "pro"', "then": [{"track": {"event": "Order Completed",
                                                       "properties": {"again": True}}}]},
    ]))  # fmt: skip
    harness.log.send(identify("u1", plan="pro"))
    harness.log.send(track("u1", "Order Completed"))
    harness.until(lambda: harness.states(aid) == ["completed"])
    for _ in range(5):
        harness.turn()
    assert len(harness.runs(aid)) == 1  # its own Order Completed did not start another run
    fed = harness.log.store.rows(
        "SELECT type, event, source_id FROM events WHERE source_id = 'cairn:automations'"
    )
    assert [tuple(r) for r in fed] == [("track", "Order Completed", "cairn:automations")]


def test_trait_trigger_with_from_and_to(harness: Harness) -> None:
    aid = harness.create(automation(trigger={"trait": "plan", "from": "free", "to": "pro"}))
    harness.log.send(identify("u1", plan="free"), identify("u2", plan="trial"))
    harness.turn()
    harness.log.send(identify("u1", plan="pro"), identify("u2", plan="pro"))
    harness.until(lambda: harness.states(aid) == ["completed"])
    assert harness.runs(aid)[0][1] == harness.log.store.rows(
        "SELECT person_id FROM identifiers WHERE value = 'u1'")[0][0]  # fmt: skip


def test_segment_enter_trigger(harness: Harness) -> None:
    from cairn.finder.segments import Segments
    from cairn.finder.text import parse

    Segments(harness.log.store).create(harness.workspace_id, "Pros", parse('plan = "pro"'), "")
    segments = SegmentEngine(harness.log.store)
    aid = harness.create(automation(trigger={"segment": "Pros", "on": "enter"}))
    harness.log.send(identify("u1", plan="pro"))
    harness.log.run()
    while segments.step():
        pass
    harness.until(lambda: harness.states(aid) == ["completed"])


def test_a_restart_resumes_waits(harness: Harness) -> None:
    aid = harness.create(automation(steps=[{"wait": "1s"}, {"message": {"t": 1}}]))
    harness.log.send(track("u1", "Order Completed"))
    harness.until(lambda: harness.states(aid) == ["waiting"])
    harness.engine.close()
    time.sleep(1.1)  # "down" while the wait expires
    harness.engine = make_engine(harness.log.storage)
    assert isinstance(harness.engine, AutomationEngine)
    harness.until(lambda: harness.states(aid) == ["completed"])
    assert [o for _, o in harness.steps(harness.runs(aid)[0][0])] == ["waiting", "waited", "stored"]
