"""A profile as a value: traits with per-trait event times, counters, first and last seen.

Everything here is order-independent where the rules say order must not matter: `set_traits` is a
last-write-wins register per trait keyed by event time (ties broken by the larger canonical JSON of
the value, so equal times resolve the same way in any arrival order), counters add, first and last
seen are min and max. `combine(a, b)` is therefore exactly the profile of a's and b's events
together, which is what makes a merge cheap and an unmerge (a recomputation) exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["RESERVED_ALIASES", "Profile", "canonical_trait", "revenue_micros"]

# Segment's reserved identify and group traits that are spelled in camelCase: one trait each,
# stored under the snake_case name (Cairn's convention).
RESERVED_ALIASES = {"firstName": "first_name", "lastName": "last_name", "createdAt": "created_at"}
# Never stored as traits: proofs and ids that arrive beside them.
IGNORED_TRAITS = frozenset({"user_hash"})

_encode = msgspec.json.Encoder(order="sorted").encode


def canonical_trait(name: str) -> str:
    return RESERVED_ALIASES.get(name, name)


def _wins(new_ts: int, new: Any, old_ts: int | None, old: Any) -> bool:
    if old_ts is None or new_ts > old_ts:
        return True
    if new_ts < old_ts:
        return False
    return _encode(new) > _encode(old)


def revenue_micros(value: Any) -> int:
    """The `revenue` property in millionths (integers add exactly, in any order); 0 if unusable."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return 0
    if isinstance(value, int | float) and value == value and abs(value) < 1e15:
        return round(value * 1_000_000)
    return 0


@dataclass(slots=True)
class Profile:
    traits: dict[str, Any] = field(default_factory=dict)
    trait_ts: dict[str, int] = field(default_factory=dict)
    event_counts: dict[str, list[int]] = field(default_factory=dict)  # name: [count, first, last]
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    events: int = 0
    revenue_micros: int = 0

    def set_traits(self, traits: dict[str, Any], ts: int) -> dict[str, tuple[Any, Any]]:
        """Apply the traits of an event at time `ts`; return {trait: (old, new)} for each change.

        `null` clears a trait (and remembers when, so an older value arriving later stays out).
        """
        changes: dict[str, tuple[Any, Any]] = {}
        for raw_name, value in traits.items():
            if raw_name in IGNORED_TRAITS or not raw_name:
                continue
            name = canonical_trait(raw_name)
            old = self.traits.get(name)
            if not _wins(ts, value, self.trait_ts.get(name), old):
                continue
            self.trait_ts[name] = ts
            if value is None:
                self.traits.pop(name, None)
            else:
                self.traits[name] = value
            if old != value or type(old) is not type(value):
                changes[name] = (old, value)
        return changes

    def touch(self, ts: int, *, active: bool = True) -> None:
        """An event at `ts`: first seen, last seen (unless the event says the user was not active)."""
        self.events += 1
        if self.first_seen_ms is None or ts < self.first_seen_ms:
            self.first_seen_ms = ts
        if active and (self.last_seen_ms is None or ts > self.last_seen_ms):
            self.last_seen_ms = ts

    def count_event(self, name: str, ts: int) -> None:
        entry = self.event_counts.get(name)
        if entry is None:
            self.event_counts[name] = [1, ts, ts]
        else:
            entry[0] += 1
            entry[1] = min(entry[1], ts)
            entry[2] = max(entry[2], ts)

    def combine(self, other: Profile) -> None:
        """Fold `other` into this profile: the profile of both sets of events."""
        for name, ts in other.trait_ts.items():
            value = other.traits.get(name)
            if _wins(ts, value, self.trait_ts.get(name), self.traits.get(name)):
                self.trait_ts[name] = ts
                if value is None:
                    self.traits.pop(name, None)
                else:
                    self.traits[name] = value
        for name, (count, first, last) in other.event_counts.items():
            entry = self.event_counts.get(name)
            if entry is None:
                self.event_counts[name] = [count, first, last]
            else:
                entry[0] += count
                entry[1] = min(entry[1], first)
                entry[2] = max(entry[2], last)
        self.first_seen_ms = _min(self.first_seen_ms, other.first_seen_ms)
        self.last_seen_ms = _max(self.last_seen_ms, other.last_seen_ms)
        self.events += other.events
        self.revenue_micros += other.revenue_micros

    def copy(self) -> Profile:
        return Profile(
            dict(self.traits),
            dict(self.trait_ts),
            {name: list(entry) for name, entry in self.event_counts.items()},
            self.first_seen_ms,
            self.last_seen_ms,
            self.events,
            self.revenue_micros,
        )


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
