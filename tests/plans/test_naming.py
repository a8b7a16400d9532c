"""The naming rules: each rule passing and failing, suggestions only when certain, settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.plans import naming
from cairn.plans.naming import (
    LEVELS,
    RULES,
    NamingConfig,
    Violation,
    check_event_name,
    check_message,
    check_property_name,
)

DOCS = Path(__file__).parents[2] / "docs" / "plans.md"


_PLAIN = NamingConfig()


def _rules(name: str, config: NamingConfig = _PLAIN) -> list[str]:
    return [v.rule for v in check_event_name(name, config)]


def _suggestion(name: str) -> str | None:
    found = {v.suggestion for v in check_event_name(name)}
    assert len(found) == 1, found  # every violation of a name carries the same fix (or none)
    return found.pop()


@pytest.mark.parametrize(
    "name",
    [
        "Order Completed",
        "Customer Signed Up",
        "Product Added to Wishlist",
        "Product Removed from Wishlist",
        "Wishlist Product Added to Cart",
        "Account Added User",
        "Checkout Step Viewed",
        "API Key Created",
        "iPhone App Opened",
        "News Feed Viewed",
        "Signed Up",  # the B2B SaaS spec's own names
        "Signed In",
        "Signed Out",
    ],
)
def test_good_event_names_pass(name: str) -> None:
    assert check_event_name(name) == []


@pytest.mark.parametrize(
    "past", ["Sent", "Paid", "Built", "Bought", "Made", "Shown", "Won", "Lost", "Read", "Reset"]
)
def test_irregular_past_tenses_count(past: str) -> None:
    assert check_event_name(f"Invoice {past}") == []


@pytest.mark.parametrize(
    ("name", "rules", "suggestion"),
    [
        ("product_added", ["event-name-format"], "Product Added"),
        ("productAdded", ["event-name-format"], "Product Added"),
        ("ProductAdded", ["event-name-format"], "Product Added"),
        ("product-added", ["event-name-format"], "Product Added"),
        ("product.added", ["event-name-format"], "Product Added"),
        ("shop:product_added", ["event-name-format"], None),  # mixed separators: words unclear
        ("product_added_to_wishlist", ["event-name-format"], "Product Added to Wishlist"),
        ("APIKeyCreated", ["event-name-format"], "API Key Created"),
        ("  Order  Completed", ["event-name-format"], "Order Completed"),
        ("Order Completed!", ["event-name-format"], None),
        ("!!!", ["event-name-format"], None),
        ("___", ["event-name-format"], None),
        ("order completed", ["event-name-title-case"], "Order Completed"),
        ("ORDER COMPLETED", ["event-name-title-case"], "Order Completed"),
        ("Order complete", ["event-name-title-case", "event-name-past-tense"], "Order Completed"),
        ("Clicked Button", ["event-name-object-action"], "Button Clicked"),
        ("clickedButton", ["event-name-format", "event-name-object-action"], "Button Clicked"),
        ("Added Product to Cart", ["event-name-object-action"], "Product Added to Cart"),
        ("Logged In", ["event-name-object-action"], None),
        ("Signup", ["event-name-object-action"], None),
        ("Purchased", ["event-name-object-action"], None),
        ("Click Button", ["event-name-past-tense"], "Button Clicked"),
        ("Page View", ["event-name-past-tense"], "Page Viewed"),
        ("Item Dropping", ["event-name-past-tense"], "Item Dropped"),
        ("Add Product to Cart", ["event-name-past-tense"], "Product Added to Cart"),
        ("add_to_cart", ["event-name-format", "event-name-past-tense"], None),
        ("Free Trial", ["event-name-past-tense"], None),
        ("Order 12345 Completed", ["event-name-dynamic"], None),
        ("Report 5f2b9c1e Viewed", ["event-name-dynamic"], None),
    ],
)
def test_bad_event_names(name: str, rules: list[str], suggestion: str | None) -> None:
    assert _rules(name) == rules
    assert _suggestion(name) == suggestion


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_event_name(name: str) -> None:
    assert _rules(name) == ["event-name-empty"]


def test_messages_say_what_is_wrong_and_show_the_convention() -> None:
    (fmt, tense) = check_event_name("add_to_cart")
    assert "snake_case" in fmt.message
    assert "past tense" in tense.message
    assert "Order Completed" in tense.message
    (order,) = check_event_name("Clicked Button")
    assert "'Button Clicked'" in order.message


def test_exceptions_extra_verbs_and_severities() -> None:
    assert _rules("signup") == ["event-name-title-case", "event-name-object-action"]
    assert check_event_name("signup", NamingConfig(exceptions=frozenset({"signup"}))) == []
    assert _rules("Deal Upsold") == ["event-name-past-tense"]
    assert check_event_name("Deal Upsold", NamingConfig(extra_verbs=frozenset({"Upsold"}))) == []
    relaxed = NamingConfig(severity={"event-name-title-case": "warning"})
    assert [(v.rule, v.severity) for v in check_event_name("order completed", relaxed)] == [
        ("event-name-title-case", "warning")
    ]
    off = NamingConfig(severity={"event-name-title-case": "off"})
    assert check_event_name("order completed", off) == []


@pytest.mark.parametrize("severity", [{"no-such-rule": "error"}, {"event-name-format": "fatal"}])
def test_bad_settings_are_refused(severity: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"rule|severity"):
        NamingConfig(severity=severity)


def test_settings_are_hashable_and_equal_by_value() -> None:
    one = NamingConfig(exceptions=frozenset({"x"}), severity={"event-name-format": "info"})
    two = NamingConfig(exceptions=frozenset({"x"}), severity={"event-name-format": "info"})
    assert one == two
    assert hash(one) == hash(two)
    assert one.level("event-name-format") == "info"
    assert one.level("event-name-title-case") == "error"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("orderId", "order_id"),
        ("OrderID", "order_id"),
        ("order-id", "order_id"),
        ("Order Id", "order_id"),
        ("order.id", "order_id"),
        ("ORDER_ID", "order_id"),
        ("order__id", "order_id"),
        ("_private", None),
        ("2fa_enabled", None),
        ("price$", None),
        ("", None),
    ],
)
def test_property_names_are_snake_case(name: str, suggestion: str | None) -> None:
    (found,) = check_property_name(name)
    assert found.rule == "property-snake-case"
    assert found.suggestion == suggestion
    assert (f"write '{suggestion}'" in found.message) == (suggestion is not None)


@pytest.mark.parametrize("name", ["order_id", "total", "utm_source2", "a"])
def test_snake_case_property_names_pass(name: str) -> None:
    assert check_property_name(name) == []


@pytest.mark.parametrize("name", ["firstName", "lastName", "createdAt", "postalCode"])
def test_reserved_camel_case_traits_pass_only_as_traits(name: str) -> None:
    assert check_property_name(name, reserved=True) == []
    assert [v.rule for v in check_property_name(name)] == ["property-snake-case"]


def test_check_message_walks_properties_at_any_depth() -> None:
    message = {
        "type": "track",
        "event": "Order Completed",
        "properties": {
            "orderId": "o1",
            "products": [{"product_id": "p1", "unitPrice": 3}, {"tags": [{"Tag Name": "x"}]}],
            "utm.source": {"campaignName": "spring"},
            7: "a non-text key is not a name",
        },
    }
    found = check_message(message)
    assert [(v.path, v.suggestion) for v in found] == [
        ("properties.orderId", "order_id"),
        ("properties.products[0].unitPrice", "unit_price"),
        ('properties.products[1].tags[0]["Tag Name"]', "tag_name"),
        ('properties["utm.source"]', "utm_source"),
        ('properties["utm.source"].campaignName', "campaign_name"),
    ]


def test_check_message_per_call() -> None:
    traits = {"firstName": "Ada", "address": {"postalCode": "1000"}, "favoriteColor": "red"}
    identify = check_message({"type": "identify", "traits": traits})
    assert [v.path for v in identify] == ["traits.favoriteColor"]
    group = check_message({"type": "group", "traits": {"createdAt": 1, "employeeCount": 3}})
    assert [v.path for v in group] == ["traits.employeeCount"]
    page = check_message({"type": "page", "name": "Home page", "properties": {"pageTitle": "x"}})
    assert [v.path for v in page] == ["properties.pageTitle"]
    assert check_message({"type": "alias", "previousId": "a", "userId": "b"}) == []
    assert next(v.rule for v in check_message({"event": "order_done"})) == "event-name-format"
    assert check_message({"type": "track", "event": None, "properties": None}) == []


def test_results_stay_right_when_the_memo_is_emptied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(naming, "_MEMO_SIZE", 3)
    config = NamingConfig(exceptions=frozenset({"memo test"}))
    for round_ in range(3):
        for index in range(10):
            assert check_property_name(f"key_{index}", config) == []
            assert len(check_property_name(f"Key{index}", config)) == 1, round_
    assert len(config._memos()[1]) <= 3


def test_violation_json() -> None:
    found = Violation("property-type", "error", "m", "properties.x", "1")
    assert found.to_json() == {
        "rule": "property-type",
        "severity": "error",
        "message": "m",
        "path": "properties.x",
        "suggestion": "1",
    }


def test_every_rule_has_a_severity_and_is_documented() -> None:
    docs = DOCS.read_text()
    for rule, (severity, description) in RULES.items():
        assert severity in LEVELS
        assert description.endswith(".")
        assert f"`{rule}`" in docs, rule


_WORDS = st.sampled_from(
    ["order", "Order", "product", "added", "Added", "click", "clicked", "button", "to", "cart",
     "Completed", "sign", "up", "in", "view", "item", "page", "API", "x", "Sent"]
)  # fmt: skip
_SEPARATORS = st.sampled_from([" ", "_", "-", ".", "", "  "])


@given(st.lists(_WORDS, min_size=1, max_size=5), _SEPARATORS)
def test_a_suggested_event_name_passes_every_rule(words: list[str], separator: str) -> None:
    for found in check_event_name(separator.join(words)):
        if found.suggestion is not None:
            assert check_event_name(found.suggestion) == [], found


@given(st.text(alphabet="abcAB_-. 1", min_size=1, max_size=12))
def test_a_suggested_property_name_is_snake_case(name: str) -> None:
    for found in check_property_name(name):
        if found.suggestion is not None:
            assert check_property_name(found.suggestion) == []


@given(st.text(max_size=40))
def test_any_text_gets_an_answer(name: str) -> None:
    for found in check_event_name(name):
        assert found.rule in RULES
        if found.suggestion is not None:
            assert check_event_name(found.suggestion) == [], found
    for found in check_property_name(name, reserved=True):
        assert found.rule == "property-snake-case"


_KEYS = st.sampled_from(["order_id", "orderId", "firstName", "first_name", "Total", "a b", "x"])
_VALUES = st.none() | st.integers() | st.text(max_size=3)
_SECTION = st.none() | st.integers() | st.dictionaries(
    _KEYS, _VALUES | st.dictionaries(_KEYS, _VALUES, max_size=2) | st.lists(_VALUES, max_size=2),
    max_size=4,
)  # fmt: skip
_SHARED = NamingConfig()


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]),
            "event": st.none()
            | st.integers()
            | st.sampled_from(["Order Completed", "order_completed", "Clicked Button", ""]),
            "properties": _SECTION,
            "traits": _SECTION,
        },
    )
)
def test_results_remembered_by_shape_are_those_worked_out_afresh(message: dict[str, Any]) -> None:
    """Flat sections are remembered by (event, section, keys): the answer with every earlier
    example's results in the memo must be the one a fresh configuration works out."""
    fresh = check_message(message, NamingConfig())
    assert check_message(message, _SHARED) == fresh
    assert check_message(message, _SHARED) == fresh


def test_the_same_keys_in_another_section_or_event_are_checked_as_such() -> None:
    config = NamingConfig()
    keys = {"firstName": 1, "total": 2}
    messages = [
        {"type": "identify", "traits": keys},  # firstName: a reserved trait, fine
        {"type": "page", "properties": keys},  # not as a property
        {"type": "track", "event": "done_it", "properties": keys},
        {"type": "track", "event": "Order Completed", "properties": keys},
        {"type": "group", "traits": keys},
    ]
    found = [[v.path for v in check_message(m, config)] for m in messages]
    assert found == [[v.path for v in check_message(m, NamingConfig())] for m in messages]
    assert found[0] == found[4] == []
    assert found[1] == found[3] == ["properties.firstName"]
    assert found[2][-1] == "properties.firstName"
    assert "" in found[2]
