"""Databases shared by the finder and plans benchmarks: a realistic log, processed or not.

- `processed_sqlite(total)` / `processed_postgres(url, total)`: bench/pipeline.py's mix of 100,000
  people (`mix_chunk`: anonymous browsing, identifies, second devices and merges, accounts,
  heavy-tailed activity, ecommerce tracks with `total` on "Order Completed"), appended through the
  collector's own `normalize` and `Storage.append`, then run through the real pipeline
  (`Pipeline.run_until_idle()`), as `cairn serve` would have. Cached under `bench/.data` (SQLite)
  and as a database of its own on the PostgreSQL server, keyed by event count and the migrations'
  hash (bench/prefill.py), with a kind of their own (`finder`), so no other benchmark's run touches
  them.
- `plans_chunk`: the same mix with a share of events that break the naming rules or the ecommerce
  plan (snake_case and camelCase names, verb-first names, unplanned events, a price sent as a
  string, camelCase property keys, a missing `order_id`), for bench/plans.py.
"""

from __future__ import annotations

import functools
import os
import random
from datetime import UTC, datetime
from typing import Any

from events import USERS
from pipeline import _message, _population, fill_and_process
from prefill import Prefilled, normalized_chunk, prefill_postgres, prefill_sqlite

__all__ = ["BAD_SHARE", "machine_line", "plans_chunk", "processed_postgres", "processed_sqlite"]

FINDER_KIND = "finder"
BAD_SHARE = 0.05  # of track events: broken on purpose (plans_chunk)


def machine_line() -> str:
    """When and on what a run starts, for the top of its output."""
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.2f} before the run")  # fmt: skip


def processed_sqlite(total: int) -> Prefilled:
    return prefill_sqlite(total, kind=FINDER_KIND, filler=fill_and_process)


def processed_postgres(url: str, total: int) -> Prefilled:
    filler = functools.partial(fill_and_process, postgres_server=url)
    return prefill_postgres(url, total, kind=FINDER_KIND, filler=filler)


# the mix with bad events, for the plans benchmark ---------------------------------------------
_BAD_NAMES = ("product_added", "productViewed", "Add To Cart", "checkout started", "Clicked Button",
              "Wishlist Thing Happened", "Order 12345 Completed")  # fmt: skip


def _conform(message: dict[str, Any]) -> None:
    """Give the mix's tracks what the ecommerce library requires of them."""
    properties = message.get("properties", {})
    if message.get("event") == "Products Searched":
        properties["query"] = properties.get("name", "backpack").lower()
    elif message.get("event") == "Promotion Viewed":
        properties["promotion_id"] = f"promo_{properties.pop('position', 1)}"


def _break(rng: random.Random, message: dict[str, Any]) -> None:
    """Make a track message wrong in one of the ways teams get tracking wrong."""
    properties = message.setdefault("properties", {})
    roll = rng.randrange(4)
    if roll == 0:
        message["event"] = rng.choice(_BAD_NAMES)
    elif roll == 1 and "price" in properties:
        properties["price"] = f"{properties['price']:.2f}"  # a number sent as a string
    elif roll == 2:
        properties["orderId"] = f"ord_{rng.getrandbits(32):08x}"  # camelCase key
    else:
        properties.pop("order_id", None)
        properties.pop("product_id", None)  # a required id missing


def plans_chunk(
    first: int, count: int, total: int, start_ms: int, workspace: int, source: str
) -> bytes:
    """Everyday activity of the mix's people (65% tracks, then pages, screens and identifies),
    with BAD_SHARE of the tracks broken (a `prefill.ChunkMaker`). The people's planned first
    events are left out, so a log of a few hundred thousand events is mostly ecommerce tracks."""
    mix = _population()
    rng = random.Random(first + 7)
    drawn = rng.choices(range(USERS), cum_weights=mix.cum_weights, k=count)
    messages = []
    for i, n in enumerate(drawn):
        message = _message(rng, mix.people[n], "", (first + i + 0.5) / total)
        if message.get("type") == "track":
            _conform(message)
            if rng.random() < BAD_SHARE:
                _break(rng, message)
        messages.append(message)
    return normalized_chunk(messages, first, total, start_ms, workspace, source, rng)
