"""Plans: includes and extensions, the JSON form, modes per source, and what `check` decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cairn.plans.plan import (
    CompiledPlan,
    Modes,
    Plan,
    apply_omit,
    check_naming_only,
    load_plan,
    plan_from_json,
)

SHOP = """\
name: shop
include: [ecommerce]
events:
  Order Completed:
    properties:
      gift_wrap: boolean
      total: {type: number, minimum: 0}
    required: [order_id, total]
  Newsletter Subscribed:
    properties:
      list_id: {type: string, pattern: "^list_[a-z]+$"}
    required: [list_id]
    additional_properties: false
identify:
  traits:
    plan: {enum: [free, pro]}
    first_name: string
  required: [email]
modes: {unplanned: flag, violations: flag}
sources:
  web: {violations: omit}
  server: {unplanned: block, violations: block}
"""


@pytest.fixture
def shop(tmp_path: Path) -> Plan:
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)
    return load_plan(path)


def _track(event: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "properties": properties}


def test_a_plan_extends_the_library_it_includes(shop: Plan) -> None:
    order = shop.events["Order Completed"]
    assert {"order_id", "products", "currency", "gift_wrap"} <= set(order.properties)
    assert order.properties["total"] == {"type": "number", "minimum": 0}  # overridden
    assert order.required == ("order_id", "total")  # replaced
    assert order.description.startswith("A customer completed an order")  # kept
    assert shop.events["Product Viewed"].required == ("product_id",)  # untouched
    assert "Newsletter Subscribed" in shop.events
    assert shop.include == ("ecommerce",)
    assert shop.identify_traits["required"] == ["email"]
    assert "first_name" in shop.identify_traits["properties"]


def test_modes_per_source(shop: Plan) -> None:
    assert shop.modes_for(None) == Modes("flag", "flag")
    assert shop.modes_for("web") == Modes("flag", "omit")  # inherits unplanned
    assert shop.modes_for("server") == Modes("block", "block")
    assert shop.modes_for("ios") == Modes("flag", "flag")
    assert Plan(name="x").modes == Modes("allow", "flag")


def test_json_form_round_trips(shop: Plan) -> None:
    data = shop.to_json()
    json.dumps(data)
    again = plan_from_json(data)
    assert again.to_json() == data
    assert data["events"]["Order Completed"]["required"] == ["order_id", "total"]
    assert data["sources"]["web"] == {"unplanned": "flag", "violations": "omit"}


def test_the_same_plan_from_json_and_from_yaml(tmp_path: Path, shop: Plan) -> None:
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(shop.to_json(), indent=2))
    assert load_plan(path).to_json() == shop.to_json()


def test_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "mobile-plan.yml"
    path.write_text("events: {Screen Viewed: }\n")
    assert load_plan(path).name == "mobile-plan"
    assert plan_from_json({"events": {}}).name == "plan"


def test_flag_mode(shop: Plan) -> None:
    checker = CompiledPlan(shop)
    good = checker.check(_track("Order Completed", order_id="o1", total=10, gift_wrap=True))
    assert (good.action, good.violations, good.omit) == ("accept", (), ())
    bad = checker.check(_track("Order Completed", order_id="o1", total=-1, gift_wrap="yes"))
    assert bad.action == "flag"
    assert [(v.rule, v.path) for v in bad.violations] == [
        ("property-range", "properties.total"),
        ("property-type", "properties.gift_wrap"),
    ]
    assert bad.omit == ()


def test_unplanned_events(shop: Plan) -> None:
    flagged = CompiledPlan(shop).check(_track("Video Played"))
    assert [(v.rule, v.path) for v in flagged.violations] == [("unplanned-event", "")]
    assert flagged.action == "flag"
    assert CompiledPlan(shop, "server").check(_track("Video Played")).action == "block"
    allowing = plan_from_json({"events": {}})
    assert CompiledPlan(allowing).check(_track("Video Played")).action == "accept"


def test_omit_mode_lists_the_offending_properties(shop: Plan) -> None:
    message = _track(
        "Order Completed",
        order_id="o1",
        total="12",
        products=[{"product_id": "p1", "price": "9.99"}, {"product_id": "p2", "price": 1}],
    )
    result = CompiledPlan(shop, "web").check(message)
    assert result.action == "flag"
    assert result.omit == ("properties.total", "properties.products[0].price")
    cleaned = apply_omit(message, result.omit)
    assert cleaned["properties"] == {
        "order_id": "o1",
        "products": [{"product_id": "p1"}, {"product_id": "p2", "price": 1}],
    }
    assert message["properties"]["total"] == "12"  # the original is untouched
    assert cleaned["properties"]["products"][1] is message["properties"]["products"][1]


def test_omit_cannot_fix_a_missing_property(shop: Plan) -> None:
    result = CompiledPlan(shop, "web").check(_track("Newsletter Subscribed", source="footer"))
    assert [(v.rule, v.path) for v in result.violations] == [
        ("property-required", "properties.list_id"),
        ("property-unplanned", "properties.source"),
    ]
    assert result.omit == ("properties.source",)
    assert result.action == "flag"


def test_block_mode(shop: Plan) -> None:
    checker = CompiledPlan(shop, "server")
    assert checker.check(_track("Order Completed", order_id="o1", total="x")).action == "block"
    assert checker.check(_track("Order Completed", order_id="o1", total=1)).action == "accept"
    naming_only = checker.check(_track("Order Completed", order_id="o1", total=1, giftWrap=True))
    assert naming_only.action == "flag"  # naming errors flag, never block or omit


def test_warnings_do_not_flag(tmp_path: Path) -> None:
    plan = plan_from_json(
        {
            "events": {"Order Completed": {"properties": {"total": "number"}}},
            "naming": {"severity": {"property-type": "warning"}},
            "modes": {"violations": "block"},
        }
    )
    result = CompiledPlan(plan).check(_track("Order Completed", total="1"))
    assert result.action == "accept"
    assert [v.severity for v in result.violations] == ["warning"]


def test_identify_and_group_traits(shop: Plan) -> None:
    checker = CompiledPlan(shop)
    result = checker.check({"type": "identify", "traits": {"firstName": 3, "plan": "gold"}})
    assert [(v.rule, v.path) for v in result.violations] == [
        ("property-required", "traits.email"),
        ("property-type", "traits.firstName"),  # firstName is the reserved first_name
        ("property-enum", "traits.plan"),
    ]
    ok = checker.check({"type": "identify", "traits": {"email": "a@b.co", "FirstName": "Ada"}})
    assert [v.rule for v in ok.violations] == ["property-snake-case"]  # FirstName: naming only
    assert checker.check({"type": "group", "groupId": "g", "traits": {"x": 1}}).action == "accept"


def test_b2b_saas_requires_the_account_on_every_event() -> None:
    checker = CompiledPlan(plan_from_json({"include": ["b2b-saas"]}))
    missing = checker.check(_track("Signed In", username="ada"))
    assert [(v.rule, v.path) for v in missing.violations] == [
        ("property-required", "context.groupId")
    ]
    sent = {**_track("Signed In", username="ada"), "context": {"groupId": "acct_1"}}
    assert checker.check(sent).violations == ()
    wrong = {**_track("Signed In"), "context": {"groupId": 42}}
    assert [v.rule for v in checker.check(wrong).violations] == ["property-type"]
    group = checker.check({"type": "group", "groupId": "g", "traits": {"employees": "ten"}})
    assert [(v.rule, v.path) for v in group.violations] == [("property-type", "traits.employees")]


def test_properties_that_are_not_an_object(shop: Plan) -> None:
    result = CompiledPlan(shop).check(
        {"type": "track", "event": "Order Completed", "properties": []}
    )
    assert [(v.rule, v.path) for v in result.violations] == [("property-type", "properties")]
    missing = CompiledPlan(shop).check({"type": "track", "event": "Order Completed"})
    assert [v.rule for v in missing.violations] == ["property-required", "property-required"]


def test_check_naming_only() -> None:
    assert check_naming_only(_track("Order Completed", order_id="o1")).action == "accept"
    flagged = check_naming_only(_track("order_completed", orderId="o1"))
    assert flagged.action == "flag"
    assert len(flagged.violations) == 2
    assert check_naming_only(_track("Order 12345 Completed")).action == "accept"  # a warning


def test_apply_omit_paths() -> None:
    message = {"properties": {"a": {"b": 1, "c": 2}, "list": [1, 2, 3], "utm.source": "x"}}
    cleaned = apply_omit(
        message,
        ["properties.a.b", "properties.list[0]", "properties.list[2]", 'properties["utm.source"]'],
    )
    assert cleaned == {"properties": {"a": {"c": 2}, "list": [2]}}
    assert apply_omit(message, ["properties.a", "properties.a.b"]) == {
        "properties": {"list": [1, 2, 3], "utm.source": "x"}
    }
    assert apply_omit(message, ["properties.missing.deep"]) == message
