"""Enforcement in the pipeline on every backend: naming rules always, the source's plan when
installed; flagged events are stored with their violations, blocked ones never reach profiles and
wait in the quarantine until a fixed plan releases them."""

from __future__ import annotations

from typing import Any

import msgspec

from cairn.plans.plan import plan_from_json
from cairn.plans.store import PlanStore
from cairn.profiles import read
from cairn.storage.base import EventQuery
from tests.support.pipeline import Log, msg

T = 1_767_225_600_000


def _plan(violations: str, unplanned: str = "allow", **events: Any) -> Any:
    return plan_from_json({
        "name": "shop", "include": ["ecommerce"],
        "modes": {"unplanned": unplanned, "violations": violations}, "events": events,
    })  # fmt: skip


def _install(log: Log, plan: Any) -> PlanStore:
    assert log.pipeline is not None
    assert log.workspace is not None
    assert log.source is not None
    log.pipeline.plans.install(log.workspace.id, log.source.id, plan)
    return log.pipeline.plans


def _person(log: Log, user: str) -> dict[str, Any]:
    assert log.workspace is not None
    pid = read.lookup(log.store, log.rules, log.workspace.id, {"user_id": user})
    return read.person_json(log.store, log.workspace.id, pid)


def test_naming_rules_flag_without_a_plan(log: Log) -> None:
    log.send(
        msg("track", at=T, userId="u", event="add_to_cart", properties={"productId": "p1"}),
        msg("track", at=T + 1, userId="u", event="Product Added", properties={"product_id": "p1"}),
    )
    log.run()
    assert log.pipeline is not None
    assert log.workspace is not None
    report = log.pipeline.plans.violations(log.workspace.id, source_id=None, since_ms=None)
    rules = {(r["event"], r["rule"]) for r in report}
    assert ("add_to_cart", "property-snake-case") in rules
    assert any(event == "add_to_cart" and rule.startswith("event-name") for event, rule in rules)
    assert all(r["event"] != "Product Added" for r in report)
    example = next(r for r in report if r["rule"] == "property-snake-case")
    assert example["example"]["event"] == "add_to_cart"
    assert example["count"] == 1
    # flagged events still reach the profile
    assert _person(log, "u")["event_counts"]["add_to_cart"]["count"] == 1


def test_block_mode_quarantines_until_the_plan_is_fixed(log: Log) -> None:
    plans = _install(log, _plan("block"))
    bad = {"order_id": "o1", "total": "12.50", "revenue": 10}  # total must be a number
    log.send(
        msg("track", at=T, userId="u", event="Order Completed", properties=bad),
        msg("track", at=T + 1, userId="u", event="Order Completed",
            properties={"order_id": "o2", "total": 20, "revenue": 20}),
    )  # fmt: skip
    log.run()
    assert log.pipeline is not None
    assert log.workspace is not None
    person = _person(log, "u")
    assert person["event_counts"]["Order Completed"]["count"] == 1
    assert person["revenue"] == 20
    held = plans.quarantine(log.workspace.id)["data"]
    assert len(held) == 1
    assert held[0]["plan_version"] == 1
    assert held[0]["message"]["properties"]["total"] == "12.50"
    assert any(v["path"] == "properties.total" for v in held[0]["violations"])
    # still blocked under the same plan
    assert log.pipeline.replay_quarantine(log.workspace.id) == {"released": 0, "blocked": 1}
    # the plan is fixed: total may be a string too
    fixed = _plan(
        "block", **{"Order Completed": {"properties": {"total": {"type": ["number", "string"]}}}}
    )
    _install(log, fixed)
    assert log.pipeline.replay_quarantine(log.workspace.id) == {"released": 1, "blocked": 0}
    assert plans.quarantine(log.workspace.id)["data"] == []
    person = _person(log, "u")
    assert person["event_counts"]["Order Completed"]["count"] == 2
    assert person["revenue"] == 30


def test_omit_mode_removes_only_the_bad_property(log: Log) -> None:
    _install(log, _plan("omit"))
    log.send(msg("track", at=T, userId="u", event="Order Completed",
                 properties={"order_id": "o1", "total": 5, "revenue": "lots"}))  # fmt: skip
    log.run()
    person = _person(log, "u")
    assert person["event_counts"]["Order Completed"]["count"] == 1
    assert person["revenue"] == 0  # the invalid revenue never reached the profile
    assert log.workspace is not None
    (stored,) = log.storage.query_events(log.workspace.id, EventQuery())
    assert msgspec.json.decode(stored.body)["properties"]["revenue"] == "lots"  # the log keeps it


def test_unplanned_events_can_be_blocked(log: Log) -> None:
    plans = _install(log, _plan("flag", unplanned="block"))
    log.send(
        msg("track", at=T, userId="u", event="Spaceship Launched"),
        msg("track", at=T + 1, userId="u", event="Product Viewed", properties={"product_id": "p"}),
    )
    log.run()
    assert log.workspace is not None
    counts = _person(log, "u")["event_counts"]
    assert "Spaceship Launched" not in counts
    assert "Product Viewed" in counts
    (held,) = plans.quarantine(log.workspace.id)["data"]
    assert held["violations"][0]["rule"] == "unplanned-event"
    report = plans.violations(log.workspace.id, source_id=None, since_ms=None)
    assert {r["plan_version"] for r in report} == {1}


def test_versions_are_kept(log: Log) -> None:
    plans = _install(log, _plan("flag"))
    _install(log, _plan("block"))
    assert log.workspace is not None
    assert log.source is not None
    versions = plans.versions(log.workspace.id, log.source.id)
    assert [(v["version"], v["active"]) for v in versions] == [(2, True), (1, False)]
    assert plans.plan(log.workspace.id, log.source.id)["version"] == 2
    assert plans.plan(log.workspace.id, log.source.id, 1)["plan"]["modes"]["violations"] == "flag"
