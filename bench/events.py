"""Realistic Segment track messages for the benchmarks: ecommerce events of about 700 bytes each.

Shared by the load generator (which turns a batch of them into a byte template) and the prefill
(which stores millions of them through the collector's own normalization).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

__all__ = ["USERS", "format_ms", "track_message", "user_ids"]

USERS = 100_000
_EVENTS = (
    "Product Viewed",
    "Product Clicked",
    "Product Added",
    "Cart Viewed",
    "Checkout Started",
    "Order Completed",
    "Products Searched",
    "Promotion Viewed",
)
_PRODUCTS = (
    ("507f1f77bcf86cd799439011", "G-32", "Games", "Monopoly: 3rd Edition", "Hasbro", 18.99),
    ("505bd76785ebb509fc183733", "F-14", "Outdoor", "Trailblazer 40L Backpack", "Osprey", 129.0),
    ("61a8c2e4f0d3b2a1c9e8d7f6", "K-07", "Kitchen", "Cast Iron Skillet 26 cm", "Lodge", 39.5),
    ("5f8d0d55b54764421b7156c3", "B-88", "Books", "The Pragmatic Programmer", "Addison", 44.95),
)
_LIBRARIES = (
    {"name": "analytics-node", "version": "2.1.3"},
    {"name": "analytics-python", "version": "2.3.2"},
    {"name": "analytics.js", "version": "npm:next-1.84.3"},
)
_TIMEZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "America/Sao_Paulo")


def format_ms(ms: int) -> str:
    """`2026-11-29T12:00:00.123Z`, as analytics.js writes timestamps."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def user_ids(user: int) -> tuple[str, str]:
    """The userId and a stable anonymousId for user number `user`."""
    anonymous = f"{user * 2654435761 % 2**32:08x}-5d1e-4c3a-9f2b-{user * 40503 % 2**48:012x}"
    return f"user_{user:06d}", anonymous


def track_message(rng: random.Random, user: int, timestamp: str, message_id: str) -> dict[str, Any]:
    """One track message as a server-side Segment library would send it inside a batch."""
    user_id, anonymous_id = user_ids(user)
    product_id, sku, category, name, brand, price = rng.choice(_PRODUCTS)
    slug = name.lower().replace(" ", "-").replace(":", "")
    quantity = rng.randint(1, 3)
    return {
        "type": "track",
        "event": rng.choice(_EVENTS),
        "userId": user_id,
        "anonymousId": anonymous_id,
        "messageId": message_id,
        "timestamp": timestamp,
        "properties": {
            "product_id": product_id,
            "sku": sku,
            "category": category,
            "name": name,
            "brand": brand,
            "price": price,
            "quantity": quantity,
            "currency": "USD",
            "value": round(price * quantity, 2),
            "position": rng.randint(1, 24),
        },
        "context": {
            "library": rng.choice(_LIBRARIES),
            "page": {
                "path": f"/p/{slug}",
                "referrer": "https://www.google.com/",
                "url": f"https://shop.example.com/p/{slug}",
            },
            "locale": "en-US",
            "timezone": rng.choice(_TIMEZONES),
            "ip": f"203.0.113.{user % 250 + 1}",
        },
    }
