"""Python functions SQLite calls from the finder's SQL (registered on every SQLite connection).

They are the same code the live evaluator runs, so SQLite search and live membership cannot
disagree on what a time or an event property filter means.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Any

import msgspec

from cairn.finder.evaluate import property_matches
from cairn.finder.tree import Condition, where_from_json
from cairn.finder.values import MISSING, time_of, value_at

__all__ = ["properties_of", "register"]

_decode = msgspec.json.decode


def _time(kind: str | None, value: Any) -> int | None:
    if kind in ("integer", "real"):
        return time_of(value)
    if kind == "text":
        return time_of(value)
    return None


@lru_cache(maxsize=256)
def _condition(text: str) -> Condition:
    return where_from_json(_decode(text))


class _Properties(msgspec.Struct):
    """The one field of a message a `where` reads: decoding skips the others unbuilt."""

    properties: Any = None


_decode_properties = msgspec.json.Decoder(_Properties).decode


def properties_of(body: bytes | str) -> dict[str, Any] | None:
    """A logged message's properties ({} when it has none), or None for a body that is not
    JSON."""
    try:
        properties = _decode_properties(body).properties
    except msgspec.ValidationError:  # not an object: no properties
        return {}
    except msgspec.DecodeError:
        return None
    return properties if isinstance(properties, dict) else {}


def _where(body: bytes | str, condition: str, now_ms: int) -> int:
    properties = properties_of(body)
    if properties is None:
        return 0
    return int(property_matches(_condition(condition), properties, now_ms))


def _at(document: str | None, path: str) -> Any:
    if document is None:
        return MISSING
    return value_at(_decode(document), tuple(_decode(path)))


def _type(document: str | None, path: str) -> str | None:
    value = _at(document, path)
    if value is MISSING:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "text"
    return "array" if isinstance(value, list) else "object"


def _value(document: str | None, path: str) -> Any:
    value = _at(document, path)
    if value is MISSING or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and abs(value) >= 2**63:
        return float(value)
    return value


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("cairn_time", 2, _time, deterministic=True)
    conn.create_function("cairn_where", 3, _where, deterministic=True)
    conn.create_function("cairn_type", 2, _type, deterministic=True)
    conn.create_function("cairn_value", 2, _value, deterministic=True)
