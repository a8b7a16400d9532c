"""The built-in libraries: every event of PROTOCOL.md, clean names, the spec's example events
pass, wrong types are caught."""

from __future__ import annotations

from typing import Any

import pytest

from cairn.plans.naming import check_event_name, check_property_name
from cairn.plans.plan import LIBRARIES, CompiledPlan, library, plan_from_json

ECOMMERCE_EVENTS = [
    "Products Searched", "Product List Viewed", "Product List Filtered", "Promotion Viewed",
    "Promotion Clicked", "Product Clicked", "Product Viewed", "Product Added", "Product Removed",
    "Cart Viewed", "Checkout Started", "Checkout Step Viewed", "Checkout Step Completed",
    "Payment Info Entered", "Order Completed", "Order Updated", "Order Cancelled",
    "Order Refunded", "Coupon Entered", "Coupon Applied", "Coupon Removed", "Coupon Denied",
    "Product Added to Wishlist", "Product Removed from Wishlist", "Wishlist Product Added to Cart",
    "Product Shared", "Cart Shared", "Product Reviewed",
]  # fmt: skip
B2B_EVENTS = [
    "Account Created", "Account Deleted", "Signed Up", "Signed In", "Signed Out", "Invite Sent",
    "Account Added User", "Account Removed User", "Trial Started", "Trial Ended",
]  # fmt: skip
PRODUCT = [
    "product_id", "sku", "category", "name", "brand", "variant", "price", "quantity", "coupon",
    "position", "url", "image_url",
]  # fmt: skip
MONEY = ["value", "revenue", "shipping", "tax", "discount", "subtotal", "total", "price"]

PRODUCTS = [
    {
        "product_id": "507f1f77bcf86cd799439011",
        "sku": "45790-32",
        "name": "Monopoly: 3rd Edition",
        "price": 19,
        "quantity": 1,
        "category": "Games",
        "url": "https://www.example.com/product/path",
        "image_url": "https://www.example.com/product/path.jpg",
    },
    {
        "product_id": "505bd76785ebb509fc183733",
        "sku": "46493-32",
        "name": "Uno Card Game",
        "price": 3,
        "quantity": 2,
        "category": "Games",
    },
]
# The Segment spec's example events.
ECOMMERCE_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("Products Searched", {"query": "blue roses"}),
    ("Product List Viewed", {"list_id": "hot_deals_1", "category": "Deals", "products": PRODUCTS}),
    (
        "Product List Filtered",
        {
            "list_id": "todays_deals_may_11_2016",
            "filters": [{"type": "department", "value": "beauty"}, {"type": "price", "value": "under-$25"}],
            "sorts": [{"type": "price", "value": "desc"}],
            "products": PRODUCTS,
        },
    ),
    ("Promotion Viewed", {"promotion_id": "promo_1", "creative": "top_banner_2", "name": "75% store-wide shoe sale", "position": "home_banner_top"}),
    ("Product Clicked", {**PRODUCTS[0], "brand": "Hasbro", "variant": "200 pieces", "coupon": "MAYDEALS", "position": 3}),
    ("Product Viewed", {**PRODUCTS[0], "currency": "USD", "value": 18.99}),
    ("Product Added", {"cart_id": "skdjsidjsdkdj29j", **PRODUCTS[0]}),
    ("Cart Viewed", {"cart_id": "d92jd29jd92jd29j92d92jd", "products": PRODUCTS}),
    (
        "Checkout Started",
        {"order_id": "50314b8e9bcf000000000000", "affiliation": "Google Store", "value": 30, "revenue": 25.0, "shipping": 3, "tax": 2, "discount": 2.5, "coupon": "hasbros", "currency": "USD", "products": PRODUCTS},
    ),
    ("Checkout Step Viewed", {"checkout_id": "50314b8e9bcf000000000000", "step": 2, "shipping_method": "Fedex", "payment_method": "Visa"}),
    ("Payment Info Entered", {"checkout_id": "39f39fj39f3jf93fj9fj39fj3f", "order_id": "dkfsjidfjsdifsdfksdjfkdsfjsdfkdsf", "step": 4}),
    (
        "Order Completed",
        {"checkout_id": "fksdjfsdjfisjf9sdfjsd9f", "order_id": "50314b8e9bcf000000000000", "affiliation": "Google Store", "total": 27.50, "subtotal": 22.50, "revenue": 25.00, "shipping": 3, "tax": 2, "discount": 2.5, "coupon": "hasbros", "currency": "USD", "products": PRODUCTS},
    ),
    ("Order Refunded", {"order_id": "50314b8e9bcf000000000000", "total": 30, "currency": "USD", "products": PRODUCTS[:1]}),
    ("Coupon Applied", {"order_id": "50314b8e9bcf000000000000", "cart_id": "923923929jd29jd92dj9j93fj3", "coupon_id": "may_deals_2016", "coupon_name": "May Deals 2016", "discount": 23.32}),
    ("Coupon Denied", {"order_id": "50314b8e9bcf000000000000", "cart_id": "923923929jd29jd92dj9j93fj3", "coupon_id": "may_deals_2016", "coupon_name": "May Deals 2016", "reason": "Coupon expired"}),
    ("Product Added to Wishlist", {"wishlist_id": "skdjsidjsdkdj29j", "wishlist_name": "Loved Games", **PRODUCTS[0]}),
    ("Wishlist Product Added to Cart", {"wishlist_id": "skdjsidjsdkdj29j", "wishlist_name": "Loved Games", "cart_id": "99j2d92j9dj29dj29d2d", **PRODUCTS[0]}),
    ("Product Shared", {"share_via": "email", "share_message": "Hey, check out this item", "recipient": "friend@example.com", "product_id": "507f1f77bcf86cd799439011", "name": "Monopoly: 3rd Edition", "price": 18.99}),
    ("Cart Shared", {"share_via": "email", "share_message": "Hey, check out this item", "recipient": "friend@example.com", "cart_id": "d92jd29jd92jd29j92d92jd", "products": [{"product_id": "507f1f77bcf86cd799439011"}]}),
    ("Product Reviewed", {"product_id": "507f1f77bcf86cd799439011", "review_id": "kdfjrj39fj39jf3", "review_body": "I love this product", "rating": 5}),
]  # fmt: skip
B2B_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("Account Created", {"account_name": "Initech"}),
    ("Signed Up", {"type": "organic", "first_name": "Peter", "last_name": "Gibbons", "email": "pgibbons@example.com", "phone": "410-555-9412", "username": "pgibbons", "title": "Mr"}),
    ("Signed In", {"username": "pgibbons"}),
    ("Invite Sent", {"invitee_email": "pgibbons@example.com", "invitee_first_name": "Peter", "invitee_last_name": "Gibbons", "invitee_role": "Owner"}),
    ("Account Added User", {"role": "Owner"}),
    ("Account Removed User", {}),
    ("Trial Started", {"trial_start_date": "2018-08-28T04:09:47Z", "trial_end_date": "2018-09-20T04:09:47Z", "trial_plan_name": "Business Tier"}),
]  # fmt: skip


def test_the_libraries_hold_every_event_of_the_protocol() -> None:
    assert list(library("ecommerce").events) == ECOMMERCE_EVENTS
    assert list(library("b2b-saas").events) == B2B_EVENTS


@pytest.mark.parametrize("name", LIBRARIES)
def test_library_names_follow_the_naming_rules(name: str) -> None:
    plan = plan_from_json({"include": [name]})
    for event, spec in plan.events.items():
        assert check_event_name(event) == [], event
        for key in spec.properties:
            assert check_property_name(key) == [], (event, key)
    for traits in (plan.identify_traits, plan.group_traits):
        for key in traits.get("properties", {}):
            assert check_property_name(key, reserved=True) == [], key


def test_the_product_object_and_money_are_numbers() -> None:
    plan = plan_from_json({"include": ["ecommerce"]})
    assert list(plan.events["Product Clicked"].properties) == PRODUCT
    item = plan.events["Order Completed"].properties["products"]["items"]
    assert list(item["properties"]) == PRODUCT
    shared = plan.events["Product Shared"].properties
    assert not {"quantity", "coupon", "position"} & set(shared)
    for spec in plan.events.values():
        for key, schema in spec.properties.items():
            if key in MONEY:
                assert schema["type"] == "number", (spec.name, key)


@pytest.mark.parametrize(
    ("event", "properties"), ECOMMERCE_EXAMPLES, ids=[e for e, _ in ECOMMERCE_EXAMPLES]
)
def test_ecommerce_examples_pass(event: str, properties: dict[str, Any]) -> None:
    checker = CompiledPlan(plan_from_json({"include": ["ecommerce"]}))
    result = checker.check({"type": "track", "event": event, "properties": properties})
    assert result.violations == ()


@pytest.mark.parametrize(("event", "properties"), B2B_EXAMPLES, ids=[e for e, _ in B2B_EXAMPLES])
def test_b2b_examples_pass(event: str, properties: dict[str, Any]) -> None:
    checker = CompiledPlan(plan_from_json({"include": ["b2b-saas"]}))
    message = {
        "type": "track",
        "event": event,
        "properties": properties,
        "context": {"groupId": "acct_1"},
    }
    assert checker.check(message).violations == ()


@pytest.mark.parametrize(
    ("event", "properties", "path"),
    [
        ("Order Completed", {"order_id": "o1", "total": "27.50"}, "properties.total"),
        ("Order Completed", {"order_id": 50314}, "properties.order_id"),
        ("Order Completed", {"order_id": "o1", "currency": "usd"}, "properties.currency"),
        (
            "Order Completed",
            {"order_id": "o1", "products": [{"price": "19"}]},
            "properties.products[0].price",
        ),
        ("Product Viewed", {"product_id": "p", "quantity": -1}, "properties.quantity"),
        ("Checkout Step Viewed", {"step": "2"}, "properties.step"),
        ("Product Reviewed", {"product_id": "p", "rating": "5"}, "properties.rating"),
        ("Product List Filtered", {"filters": [{"type": 1}]}, "properties.filters[0].type"),
        ("Products Searched", {}, "properties.query"),
    ],
)
def test_ecommerce_rejects_wrong_values(event: str, properties: dict[str, Any], path: str) -> None:
    checker = CompiledPlan(plan_from_json({"include": ["ecommerce"]}))
    result = checker.check({"type": "track", "event": event, "properties": properties})
    assert [v.path for v in result.violations] == [path]
    assert result.action == "flag"


@pytest.mark.parametrize(
    ("event", "properties", "path"),
    [
        ("Invite Sent", {"invitee_email": "not an email"}, "properties.invitee_email"),
        ("Trial Started", {"trial_start_date": "next week"}, "properties.trial_start_date"),
        ("Account Created", {"account_name": 7}, "properties.account_name"),
    ],
)
def test_b2b_rejects_wrong_values(event: str, properties: dict[str, Any], path: str) -> None:
    checker = CompiledPlan(plan_from_json({"include": ["b2b-saas"]}))
    message = {
        "type": "track",
        "event": event,
        "properties": properties,
        "context": {"groupId": "a"},
    }
    assert [v.path for v in checker.check(message).violations] == [path]


def test_reserved_traits_in_both_spellings() -> None:
    checker = CompiledPlan(plan_from_json({"include": ["ecommerce"]}))
    good = {"email": "ada@example.com", "firstName": "Ada", "last_name": "Lovelace", "age": 36,
            "address": {"postalCode": "1000", "city": "Brussels"}, "createdAt": 1700000000}  # fmt: skip
    assert checker.check({"type": "identify", "traits": good}).violations == ()
    bad = checker.check({"type": "identify", "traits": {"first_name": 1, "age": "36"}})
    assert [v.path for v in bad.violations] == ["traits.first_name", "traits.age"]
