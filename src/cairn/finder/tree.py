"""The condition tree: one language for search, live segments and triggers (docs/finder.md).

Nodes are frozen dataclasses. The JSON form (the API's) is produced by `to_json` and read by
`from_json`, which validates everything (operators, value types, sizes, depth) and raises
`ConditionError` with a JSON-pointer-like location. The text form lives in `finder.text`.

JSON form, one object per node:

    {"and": [C, ...]}  {"or": [C, ...]}  {"not": C}
    {"trait": "address.city", "op": "=", "value": "Oslo"}            person trait (nested path)
    {"account_trait": "industry", "op": "=", "value": "Retail"}      any account of the person
    {"profile": "last_seen", "op": "within_last", "value": {"amount": 14, "unit": "days"}}
    {"did": "Order Completed", "count": {"op": "at_least", "n": 3},
     "window": {"last": 30, "unit": "days"} | {"between": ["2026-01-01", "2026-02-01"]} | "ever",
     "where": P}                                                      (count, window, where optional)
    {"did_not": "Checkout Started", "window": ..., "where": P}
    {"in_segment": "Big Spenders"}

P (inside `where`) is and/or/not over {"property": "products.category", "op": "=", "value": "Shoes"};
a path that crosses a list matches when any item matches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from cairn.errors import BadRequest
from cairn.ingest.timestamps import format_ms, parse_ms

__all__ = [
    "COMPARISONS",
    "DATE_OPS",
    "MAX_DEPTH",
    "MAX_IN_VALUES",
    "MAX_NODES",
    "PROFILE_FIELDS",
    "UNITS",
    "UNIT_MS",
    "All",
    "AnyOf",
    "Condition",
    "ConditionError",
    "Did",
    "InSegment",
    "Not",
    "Predicate",
    "Window",
    "from_json",
    "to_json",
    "where_from_json",
]

MAX_DEPTH = 32
MAX_NODES = 500
MAX_IN_VALUES = 1000
MAX_STRING = 10_000
MAX_PATH_SEGMENTS = 8

# Operators on values. Strings compare exactly with = != in; contains / starts with / ends with
# ignore case. < <= > >= compare numbers with numbers (and strings with strings).
COMPARISONS = ("=", "!=", "contains", "starts_with", "ends_with", "exists", "not_exists",
               ">", ">=", "<", "<=", "in")  # fmt: skip
# Operators on times (ISO-8601 strings or epoch milliseconds in the data).
DATE_OPS = ("before", "after", "within_last", "more_than_ago")
OPERATORS = COMPARISONS + DATE_OPS
UNITS = ("minutes", "hours", "days")
UNIT_MS = {"minutes": 60_000, "hours": 3_600_000, "days": 86_400_000}
PROFILE_FIELDS = ("first_seen", "last_seen")
COUNT_OPS = ("at_least", "at_most", "exactly")


class ConditionError(BadRequest):
    """A condition that cannot be used, with where it went wrong."""

    code = "invalid_condition"

    def __init__(self, message: str, *, at: str = "", position: int | None = None) -> None:
        where = f" at {at}" if at else ""
        super().__init__(f"{message}{where}")
        self.at = at
        self.position = position


@dataclass(frozen=True)
class Predicate:
    """A test on one value: a person trait, an account trait, a profile field or an event property.

    `scope` is "trait", "account_trait", "profile" or "property". `value` is a JSON value; for
    `in` a tuple; for `within_last` / `more_than_ago` an (amount, unit) pair; for before / after an
    epoch-ms int (the text and JSON forms write it as an ISO date).
    """

    scope: str
    path: tuple[str, ...]
    op: str
    value: Any = None


@dataclass(frozen=True)
class Window:
    """`last` (amount, unit), or `between` (start_ms, end_ms); neither means ever."""

    last: tuple[int, str] | None = None
    between: tuple[int, int] | None = None

    def bounds(self, now_ms: int) -> tuple[int | None, int | None]:
        if self.last is not None:
            amount, unit = self.last
            return now_ms - amount * UNIT_MS[unit], None
        if self.between is not None:
            return self.between
        return None, None


EVER = Window()


@dataclass(frozen=True)
class Did:
    """Did (or, with `negate`, did not) the event, `count_op` `n` times in the window, with `where`.

    `did X` alone means at least once; `did not X` means zero times (count_op and n then keep
    their defaults and mean nothing)."""

    event: str
    negate: bool = False
    count_op: str = "at_least"
    n: int = 1
    window: Window = EVER
    where: Condition | None = None


@dataclass(frozen=True)
class InSegment:
    name: str


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Union[Predicate, Did, InSegment, All, AnyOf, Not]  # noqa: UP007 (a runtime alias)


# JSON form --------------------------------------------------------------------------------------
def to_json(cond: Condition) -> dict[str, Any]:
    if isinstance(cond, All):
        return {"and": [to_json(c) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"or": [to_json(c) for c in cond.items]}
    if isinstance(cond, Not):
        return {"not": to_json(cond.item)}
    if isinstance(cond, InSegment):
        return {"in_segment": cond.name}
    if isinstance(cond, Predicate):
        node: dict[str, Any] = {cond.scope: ".".join(cond.path), "op": cond.op}
        if cond.op not in ("exists", "not_exists"):
            node["value"] = _value_json(cond)
        return node
    assert isinstance(cond, Did)
    out: dict[str, Any] = {("did_not" if cond.negate else "did"): cond.event}
    if not cond.negate and (cond.count_op, cond.n) != ("at_least", 1):
        out["count"] = {"op": cond.count_op, "n": cond.n}
    if cond.window.last is not None:
        out["window"] = {"last": cond.window.last[0], "unit": cond.window.last[1]}
    elif cond.window.between is not None:
        out["window"] = {"between": [_iso(cond.window.between[0]), _iso(cond.window.between[1])]}
    if cond.where is not None:
        out["where"] = to_json(cond.where)
    return out


def _iso(ms: int) -> str:
    return format_ms(ms)


def _value_json(p: Predicate) -> Any:
    if p.op == "in":
        return list(p.value)
    if p.op in ("within_last", "more_than_ago"):
        return {"amount": p.value[0], "unit": p.value[1]}
    if p.op in ("before", "after"):
        return _iso(p.value)
    return p.value


def from_json(node: Any) -> Condition:
    """Validate and read the JSON form."""
    counter = [0]
    return _read(node, "", 0, counter, in_where=False)


def where_from_json(node: Any) -> Condition:
    """Validate and read the JSON form of an event's `where` (property tests)."""
    return _read(node, "", 0, [0], in_where=True)


def _read(node: Any, at: str, depth: int, counter: list[int], *, in_where: bool) -> Condition:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise ConditionError(f"a condition has at most {MAX_NODES} nodes", at=at)
    if depth > MAX_DEPTH:
        raise ConditionError(f"a condition is nested at most {MAX_DEPTH} levels deep", at=at)
    if not isinstance(node, dict) or not node:
        raise ConditionError("a condition must be a JSON object", at=at or "/")
    for combinator in ("and", "or"):
        if combinator in node:
            _only(node, {combinator}, at)
            items = node[combinator]
            if not isinstance(items, list) or not items:
                raise ConditionError(f"{combinator!r} takes a non-empty list", at=at)
            read = tuple(
                _read(item, f"{at}/{combinator}/{i}", depth + 1, counter, in_where=in_where)
                for i, item in enumerate(items)
            )
            if len(read) == 1:  # the text form has no one-item and/or: read it as its item
                return read[0]
            return All(read) if combinator == "and" else AnyOf(read)
    if "not" in node:
        _only(node, {"not"}, at)
        return Not(_read(node["not"], f"{at}/not", depth + 1, counter, in_where=in_where))
    if in_where:
        if "property" not in node:
            raise ConditionError(
                "inside `where` only property tests and and/or/not are allowed", at=at
            )
        return _predicate(node, "property", at)
    for scope in ("trait", "account_trait", "profile"):
        if scope in node:
            return _predicate(node, scope, at)
    if "did" in node or "did_not" in node:
        return _did(node, at, depth, counter)
    if "in_segment" in node:
        _only(node, {"in_segment"}, at)
        return InSegment(_name(node["in_segment"], "segment name", at))
    if "property" in node:
        raise ConditionError("a property test belongs inside an event's `where`", at=at)
    raise ConditionError(
        f"unknown condition with keys {sorted(node)}: expected and, or, not, trait, "
        "account_trait, profile, did, did_not or in_segment",
        at=at or "/",
    )


def _only(node: dict[str, Any], allowed: set[str], at: str) -> None:
    extra = set(node) - allowed
    if extra:
        raise ConditionError(f"unexpected key {sorted(extra)[0]!r}", at=at or "/")


def _name(value: Any, what: str, at: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise ConditionError(f"{what} must be a non-empty string of at most 500 characters", at=at)
    return _no_nul(value, at)


def parse_path(raw: Any, at: str) -> tuple[str, ...]:
    if not isinstance(raw, str) or not raw or len(raw) > 500:
        raise ConditionError("a path must be a non-empty string", at=at)
    parts = tuple(_no_nul(raw, at).split("."))
    if any(not part for part in parts) or len(parts) > MAX_PATH_SEGMENTS:
        raise ConditionError(
            f"invalid path {raw!r}: dot-separated names, at most {MAX_PATH_SEGMENTS}", at=at
        )
    return parts


def _predicate(node: dict[str, Any], scope: str, at: str) -> Predicate:
    _only(node, {scope, "op", "value"}, at)
    path = parse_path(node[scope], f"{at}/{scope}")
    if scope == "profile" and path not in {(f,) for f in PROFILE_FIELDS}:
        raise ConditionError(
            f"unknown profile field {node[scope]!r}: use {' or '.join(PROFILE_FIELDS)}", at=at
        )
    op = node.get("op")
    if op not in OPERATORS:
        raise ConditionError(
            f"unknown operator {op!r}: use one of {', '.join(OPERATORS)}", at=f"{at}/op"
        )
    if scope == "profile" and op not in (*DATE_OPS, "exists", "not_exists"):
        raise ConditionError(f"{node[scope]} takes a time operator ({', '.join(DATE_OPS)})", at=at)
    if op in ("exists", "not_exists"):
        if "value" in node:
            raise ConditionError(f"{op} takes no value", at=f"{at}/value")
        return Predicate(scope, path, op)
    if "value" not in node:
        raise ConditionError(f"{op} needs a value", at=at)
    return Predicate(scope, path, op, check_value(op, node["value"], f"{at}/value"))


def check_value(op: str, value: Any, at: str) -> Any:
    """The value of a predicate as the tree keeps it (see `Predicate`), or ConditionError."""
    if op == "in":
        if not isinstance(value, list | tuple) or not value:
            raise ConditionError("`in` takes a non-empty list", at=at)
        if len(value) > MAX_IN_VALUES:
            raise ConditionError(f"`in` takes at most {MAX_IN_VALUES} values", at=at)
        return tuple(_scalar(v, at) for v in value)
    if op in ("within_last", "more_than_ago"):
        if isinstance(value, list | tuple) and len(value) == 2:
            amount, unit = value
        elif isinstance(value, dict) and set(value) == {"amount", "unit"}:
            amount, unit = value["amount"], value["unit"]
        else:
            raise ConditionError(f'{op} takes {{"amount": N, "unit": "days"}}', at=at)
        return (_amount(amount, at), _unit(unit, at))
    if op in ("before", "after"):
        return _date(value, at)
    if op in ("contains", "starts_with", "ends_with"):
        if not isinstance(value, str):
            raise ConditionError(f"{op} takes a string", at=at)
        return _scalar(value, at)
    if op in (">", ">=", "<", "<=") and (
        isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        raise ConditionError(f"{op} takes a number or a string", at=at)
    return _scalar(value, at)


def _scalar(value: Any, at: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= MAX_STRING:
        return _no_nul(value, at)
    raise ConditionError("values are strings, finite numbers, true, false or null", at=at)


def _no_nul(text: str, at: str) -> str:
    """U+0000 is stored as U+FFFD (PostgreSQL cannot hold it), so no condition can name it."""
    if "\x00" in text:
        raise ConditionError("a condition cannot contain U+0000 (stored as U+FFFD)", at=at)
    return text


def _amount(value: Any, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100_000:
        raise ConditionError("an amount of time is a whole number from 1 to 100000", at=at)
    return value


def _unit(value: Any, at: str) -> str:
    unit = value + "s" if isinstance(value, str) and value + "s" in UNITS else value
    if unit not in UNITS:
        raise ConditionError(f"a unit is one of {', '.join(UNITS)}", at=at)
    return str(unit)


def _date(value: Any, at: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        ms: int | None = value
    else:
        ms = parse_ms(value) if isinstance(value, str) else None
    # format_ms clamps to years 1-9999: a date it cannot write back would not round-trip.
    if ms is None or parse_ms(format_ms(ms)) != ms:
        raise ConditionError("a date is ISO 8601 (2026-01-31 or 2026-01-31T12:00:00Z)", at=at)
    return ms


def _did(node: dict[str, Any], at: str, depth: int, counter: list[int]) -> Did:
    negate = "did_not" in node
    key = "did_not" if negate else "did"
    _only(node, {key, "count", "window", "where"}, at)
    name = _name(node[key], "an event name", f"{at}/{key}")
    count_op, n = "at_least", 1
    if "count" in node:
        if negate:
            raise ConditionError("did_not takes no count (use not with did ... count)", at=at)
        count = node["count"]
        if not isinstance(count, dict) or set(count) != {"op", "n"}:
            raise ConditionError('count is {"op": "at_least|at_most|exactly", "n": N}', at=at)
        if count["op"] not in COUNT_OPS:
            raise ConditionError(f"count op is one of {', '.join(COUNT_OPS)}", at=f"{at}/count")
        n = count["n"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1_000_000:
            raise ConditionError("a count is a whole number from 0 to 1000000", at=f"{at}/count")
        count_op = count["op"]
    window = _window(node.get("window", "ever"), f"{at}/window")
    where = None
    if "where" in node:
        where = _read(node["where"], f"{at}/where", depth + 1, counter, in_where=True)
    return Did(name, negate, count_op, n, window, where)


def _window(value: Any, at: str) -> Window:
    if value == "ever" or value is None:
        return EVER
    if isinstance(value, dict) and set(value) == {"last", "unit"}:
        return Window(last=(_amount(value["last"], at), _unit(value["unit"], at)))
    if isinstance(value, dict) and set(value) == {"between"}:
        pair = value["between"]
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConditionError("between takes [start, end]", at=at)
        start, end = _date(pair[0], at), _date(pair[1], at)
        if end < start:
            raise ConditionError("between: the end is before the start", at=at)
        return Window(between=(start, end))
    raise ConditionError(
        'a window is "ever", {"last": N, "unit": "days"} or {"between": [start, end]}', at=at
    )
