"""What a predicate means on one JSON value: the single definition the evaluator follows and the SQL
compiler reproduces (the oracle tests hold them to it).

- A missing value (absent, or JSON null) makes every test false except `!=` and `not exists`;
  `= null` means `not exists` and `!= null` means `exists`.
- `=`, `!=`, `in` are exact: strings case-sensitive, numbers by value (1 = 1.0), booleans as
  booleans; a string never equals a number.
- `contains`, `starts with`, `ends with` apply to strings and ignore the case of ASCII letters.
- `<`, `<=`, `>`, `>=` compare numbers with numbers and strings with strings (by code point).
- Times (`before`, `after`, `within last`, `more than ... ago`) read the value as an ISO-8601 date
  (`2026-01-31`, `2026-01-31T12:00:00Z`, `...+02:00`; no offset means UTC) or epoch milliseconds.
- Trait and account-trait paths follow objects only. Event property paths (`where`) also step into
  lists: `products.category` matches when any product's category matches.
"""

from __future__ import annotations

import re
from typing import Any

from cairn.finder.tree import UNIT_MS
from cairn.ingest.timestamps import parse_ms

__all__ = ["MISSING", "ascii_lower", "matches", "path_values", "time_of", "value_at"]

MISSING: Any = object()
# The shapes both backends read the same way (PostgreSQL's cairn_time uses this pattern too).
ISO_DATE = re.compile(
    r"^[1-9]\d{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$"
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def value_at(data: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` through objects only, or MISSING."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return MISSING
        data = data[key]
    return MISSING if data is None else data


def path_values(data: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value at `path`, stepping into lists on the way (any-item semantics)."""
    current = [data]
    for key in path:
        following = []
        for item in current:
            if isinstance(item, dict) and key in item:
                following.append(item[key])
            elif isinstance(item, list):
                following += [x[key] for x in item if isinstance(x, dict) and key in x]
        current = following
    flat: list[Any] = []
    for value in current:
        if isinstance(value, list):
            flat += [v for v in value if v is not None]
        elif value is not None:
            flat.append(value)
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def time_of(value: Any) -> int | None:
    """A value read as a time in epoch ms: an ISO-8601 string or a number; else None."""
    if _number(value):
        return int(value) if abs(value) < 2**53 else None
    if isinstance(value, str) and ISO_DATE.match(value):
        return parse_ms(value)
    return None


def _equal(value: Any, expected: Any) -> bool:
    if expected is None:
        return False
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value is expected
    if _number(expected):
        return _number(value) and value == expected
    return isinstance(value, str) and value == expected


def matches(value: Any, op: str, expected: Any, now_ms: int) -> bool:
    """Does one value (possibly MISSING) pass the test?"""
    if op == "exists" or (op == "!=" and expected is None):
        return value is not MISSING
    if op == "not_exists" or (op == "=" and expected is None):
        return value is MISSING
    if op == "!=":
        return value is MISSING or not _equal(value, expected)
    if value is MISSING:
        return False
    if op == "=":
        return _equal(value, expected)
    if op == "in":
        return any(_equal(value, item) for item in expected)
    if op in ("contains", "starts_with", "ends_with"):
        if not isinstance(value, str):
            return False
        text, needle = ascii_lower(value), ascii_lower(expected)
        if op == "contains":
            return needle in text
        return text.startswith(needle) if op == "starts_with" else text.endswith(needle)
    if op in (">", ">=", "<", "<="):
        if _number(expected):
            if not _number(value):
                return False
        elif not isinstance(value, str) or not isinstance(expected, str):
            return False
        if op == ">":
            return bool(value > expected)
        if op == ">=":
            return bool(value >= expected)
        if op == "<":
            return bool(value < expected)
        return bool(value <= expected)
    at = time_of(value)
    if at is None:
        return False
    if op == "before":
        return at < int(expected)
    if op == "after":
        return at > int(expected)
    amount, unit = expected
    edge = now_ms - int(amount) * UNIT_MS[unit]
    return at >= edge if op == "within_last" else at < edge


def flips_at(value: Any, op: str, expected: Any) -> int | None:
    """For a relative-time test, the moment its answer changes as time passes (else None)."""
    if op not in ("within_last", "more_than_ago") or value is MISSING:
        return None
    at = time_of(value)
    if at is None:
        return None
    amount, unit = expected
    return at + int(amount) * UNIT_MS[unit] + 1
