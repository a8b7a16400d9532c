"""The live evaluator: a condition on one person's data, now, and when the answer may next change.

Live segments use it as events arrive and as windows pass; automations use it for audiences. The
second result is the earliest moment at which time alone could change the answer (an event leaving
a "last 30 days" window, a trait date crossing "within last 14 days"), so membership can be
re-checked then without any event arriving. It is exact for each test and conservative for
combinations (the earliest of the parts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cairn.finder.tree import (
    UNIT_MS,
    All,
    AnyOf,
    Condition,
    Did,
    InSegment,
    Not,
    Predicate,
)
from cairn.finder.values import MISSING, flips_at, matches, path_values, value_at

__all__ = ["PersonData", "evaluate", "event_names", "needs_properties", "segment_names"]


@dataclass
class PersonData:
    """What a condition can look at for one person."""

    traits: dict[str, Any]
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    account_traits: list[dict[str, Any]] = field(default_factory=list)
    # event name -> [(timestamp_ms, properties)], any order
    events: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    segments: set[str] = field(default_factory=set)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def evaluate(cond: Condition, person: PersonData, now_ms: int) -> tuple[bool, int | None]:
    """(does the person match now, when the answer may next change by time alone)."""
    if isinstance(cond, All | AnyOf):
        results = [evaluate(item, person, now_ms) for item in cond.items]
        nxt: int | None = None
        for _, when in results:
            nxt = _earliest(nxt, when)
        if isinstance(cond, All):
            return all(ok for ok, _ in results), nxt
        return any(ok for ok, _ in results), nxt
    if isinstance(cond, Not):
        ok, when = evaluate(cond.item, person, now_ms)
        return not ok, when
    if isinstance(cond, InSegment):
        return cond.name in person.segments, None
    if isinstance(cond, Predicate):
        return _predicate(cond, person, now_ms)
    return _did(cond, person, now_ms)


def _predicate(p: Predicate, person: PersonData, now_ms: int) -> tuple[bool, int | None]:
    if p.scope == "profile":
        ms = person.first_seen_ms if p.path[0] == "first_seen" else person.last_seen_ms
        value = ms if ms else MISSING
        return matches(value, p.op, p.value, now_ms), _ahead(value, p, now_ms)
    if p.scope == "trait":
        value = value_at(person.traits, p.path)
        return matches(value, p.op, p.value, now_ms), _ahead(value, p, now_ms)
    # account traits: any account of the person
    ok, nxt = False, None
    for traits in person.account_traits:
        value = value_at(traits, p.path)
        ok = ok or matches(value, p.op, p.value, now_ms)
        nxt = _earliest(nxt, _ahead(value, p, now_ms))
    return ok, nxt


def _ahead(value: Any, p: Predicate, now_ms: int) -> int | None:
    """When the test flips, if that is still to come: a flip already past (a first seen more
    than 14 days ago against `within 14 days`) never comes again, and as a timer it would fire
    at once, forever."""
    at = flips_at(value, p.op, p.value)
    return at if at is not None and at > now_ms else None


def property_matches(where: Condition, properties: dict[str, Any], now_ms: int) -> bool:
    """A `where` filter on one event's properties (lists stepped into: any item)."""
    if isinstance(where, All):
        return all(property_matches(c, properties, now_ms) for c in where.items)
    if isinstance(where, AnyOf):
        return any(property_matches(c, properties, now_ms) for c in where.items)
    if isinstance(where, Not):
        return not property_matches(where.item, properties, now_ms)
    assert isinstance(where, Predicate)
    values = path_values(properties, where.path)
    if where.op in ("not_exists",) or (where.op == "=" and where.value is None):
        return not values
    if where.op == "!=":
        if where.value is None:
            return bool(values)
        return not any(matches(v, "=", where.value, now_ms) for v in values)
    if not values:
        return False
    return any(matches(v, where.op, where.value, now_ms) for v in values)


def _counts(op: str, n: int, count: int) -> bool:
    if op == "at_least":
        return count >= n
    if op == "at_most":
        return count <= n
    return count == n


def _did(d: Did, person: PersonData, now_ms: int) -> tuple[bool, int | None]:
    events = person.events.get(d.event, [])
    if d.where is not None:
        where = d.where
        events = [(ts, props) for ts, props in events if property_matches(where, props, now_ms)]
    op, n = ("exactly", 0) if d.negate else (d.count_op, d.n)
    if d.window.between is not None:
        start, end = d.window.between
        count = sum(1 for ts, _ in events if start <= ts <= end)
        return _counts(op, n, count), None
    if d.window.last is None:
        return _counts(op, n, len(events)), None
    amount, unit = d.window.last
    span = amount * UNIT_MS[unit]
    edge = now_ms - span
    inside = sorted(ts for ts, _ in events if ts >= edge)
    answer = _counts(op, n, len(inside))
    # Events leave the window oldest first; find the first departure that changes the answer.
    for k, ts in enumerate(inside, start=1):
        if _counts(op, n, len(inside) - k) != answer:
            return answer, ts + span + 1
    return answer, None


def event_names(cond: Condition) -> set[str]:
    """The event names a condition counts (to load only those)."""
    if isinstance(cond, All | AnyOf):
        return set().union(*(event_names(c) for c in cond.items))
    if isinstance(cond, Not):
        return event_names(cond.item)
    if isinstance(cond, Did):
        return {cond.event}
    return set()


def needs_properties(cond: Condition) -> bool:
    if isinstance(cond, All | AnyOf):
        return any(needs_properties(c) for c in cond.items)
    if isinstance(cond, Not):
        return needs_properties(cond.item)
    return isinstance(cond, Did) and cond.where is not None


def segment_names(cond: Condition) -> set[str]:
    if isinstance(cond, All | AnyOf):
        return set().union(*(segment_names(c) for c in cond.items))
    if isinstance(cond, Not):
        return segment_names(cond.item)
    if isinstance(cond, InSegment):
        return {cond.name}
    return set()
