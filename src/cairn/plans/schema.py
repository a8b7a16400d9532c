"""JSON Schema, the subset tracking plans use, checked when a plan loads and compiled to closures.

Keywords: `type`, `properties`, `required`, `additionalProperties` (a boolean), `items`, `enum`,
`const`, `pattern` (bounded, see `patterns`), `format` (date-time, date, email, uri, uuid),
`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`,
`minItems`, `maxItems`, and the annotations `description`, `title`, `examples`, `default`,
`deprecated`, `$comment`. A schema may be written as just its type (`price: number`) or left
empty (any value). Every problem is reported at once, with its path, so one event can show all.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cairn.plans import paths
from cairn.plans.naming import NamingConfig, Violation, violation
from cairn.plans.patterns import PatternError, SafePattern, compile_pattern

__all__ = [
    "FORMATS",
    "KEYWORDS",
    "TYPES",
    "UNKNOWN",
    "At",
    "Check",
    "compile_schema",
    "normalize_schema",
    "render_path",
    "schema_problems",
]

TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")
FORMATS = ("date-time", "date", "email", "uri", "uuid")
_ANNOTATIONS = {"description", "title", "examples", "default", "deprecated", "$comment"}
_FOR_TYPE = {
    "string": {"pattern", "format", "minLength", "maxLength"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems"},
}
KEYWORDS = frozenset({"type", "enum", "const", *_ANNOTATIONS, *set().union(*_FOR_TYPE.values())})
_UNSUPPORTED = {"$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$defs"}


class _Unknown:
    """A value the source scanner could not read (a variable): it passes every check."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()

# Where a value is: a path ("properties"), or (where its parent is, its key or index). The text
# of the path is only built when a violation is found.
At = str | tuple["At", str | int]
# A compiled check: (value, where it is, where to put violations).
Check = Callable[[Any, At, list[Violation]], None]

Location = tuple[str | int, ...]


def normalize_schema(raw: Any) -> dict[str, Any]:
    """The full form of a schema that passed `schema_problems`: shorthand types expanded."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {"type": raw}
    schema = dict(raw)
    if "properties" in schema:
        schema["properties"] = {k: normalize_schema(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        schema["items"] = normalize_schema(schema["items"])
    return schema


# ---------------------------------------------------------------------------------------------
# Checking a schema as written in a plan


def schema_problems(raw: Any, at: Location) -> Iterator[tuple[Location, str]]:
    """What is wrong with the schema `raw`, found at `at` in the plan: (where, what) pairs."""
    if raw is None:
        return
    if isinstance(raw, str):
        if raw not in TYPES:
            yield at, f"unknown type {raw!r}: use one of {', '.join(TYPES)}"
        return
    if not isinstance(raw, dict):
        yield at, "a schema is a mapping of JSON Schema keywords, or just a type name"
        return
    for key in raw:
        if key not in KEYWORDS:
            yield (*at, key), _unknown_keyword(str(key))
    yield from _type_problems(raw, at)
    yield from _value_problems(raw, at)
    yield from _nested_problems(raw, at)


def _unknown_keyword(key: str) -> str:
    if key in _UNSUPPORTED:
        return f"the JSON Schema keyword {key!r} is not supported in Cairn plans"
    close = difflib.get_close_matches(key, sorted(KEYWORDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown schema keyword {key!r}{hint}"


def _declared_types(raw: Mapping[str, Any]) -> list[str]:
    declared = raw.get("type")
    if isinstance(declared, str):
        return [declared]
    return [t for t in declared if isinstance(t, str)] if isinstance(declared, list) else []


def _type_problems(raw: Mapping[str, Any], at: Location) -> Iterator[tuple[Location, str]]:
    if "type" not in raw:
        return
    declared = raw["type"]
    names = declared if isinstance(declared, list) else [declared]
    if not names or not all(isinstance(n, str) and n in TYPES for n in names):
        yield (*at, "type"), f"type must be one of {', '.join(TYPES)}, or a list of them"
        return
    kinds = {"number" if n == "integer" else n for n in names}
    for key in raw:
        for kind, keywords in _FOR_TYPE.items():
            if key in keywords and kind not in kinds:
                yield (*at, key), f"{key!r} applies to {kind} values, but the type is {declared}"


def _value_problems(raw: Mapping[str, Any], at: Location) -> Iterator[tuple[Location, str]]:
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in raw and not _is_number(raw[key]):
            yield (*at, key), f"{key} must be a number"
    for key in ("minLength", "maxLength", "minItems", "maxItems"):
        if key in raw and not (_is_int(raw[key]) and raw[key] >= 0):
            yield (*at, key), f"{key} must be a whole number, 0 or more"
    for low, high in (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems")):
        if _is_number(raw.get(low)) and _is_number(raw.get(high)) and raw[low] > raw[high]:
            yield (*at, low), f"{low} ({raw[low]}) is above {high} ({raw[high]})"
    if "pattern" in raw:
        yield from _pattern_problems(raw["pattern"], (*at, "pattern"))
    if "format" in raw and raw["format"] not in FORMATS:
        yield (*at, "format"), f"format must be one of {', '.join(FORMATS)}"
    if "enum" in raw:
        yield from _enum_problems(raw, at)
    for key in ("description", "title", "$comment"):
        if key in raw and not isinstance(raw[key], str):
            yield (*at, key), f"{key} must be text"
    if "deprecated" in raw and not isinstance(raw["deprecated"], bool):
        yield (*at, "deprecated"), "deprecated must be true or false"
    if "additionalProperties" in raw and not isinstance(raw["additionalProperties"], bool):
        yield (*at, "additionalProperties"), "additionalProperties must be true or false"


def _pattern_problems(pattern: Any, at: Location) -> Iterator[tuple[Location, str]]:
    if not isinstance(pattern, str):
        yield at, "pattern must be text (a regular expression)"
        return
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        yield at, str(exc)


def _enum_problems(raw: Mapping[str, Any], at: Location) -> Iterator[tuple[Location, str]]:
    values = raw["enum"]
    if not isinstance(values, list) or not values:
        yield (*at, "enum"), "enum must be a non-empty list of values"
        return
    tests = [_TYPE_TESTS[t] for t in _declared_types(raw) if t in _TYPE_TESTS]
    for index, value in enumerate(values):
        if tests and not any(test(value) for test in tests):
            yield (*at, "enum", index), f"{value!r} in enum does not have the type {raw['type']}"


def _nested_problems(raw: Mapping[str, Any], at: Location) -> Iterator[tuple[Location, str]]:
    properties = raw.get("properties")
    if "properties" in raw and not isinstance(properties, dict):
        yield (*at, "properties"), "properties must be a mapping of names to schemas"
    elif isinstance(properties, dict):
        for name, inner in properties.items():
            yield from schema_problems(inner, (*at, "properties", name))
    required = raw.get("required")
    if "required" in raw and not (
        isinstance(required, list) and all(isinstance(n, str) for n in required)
    ):
        yield (*at, "required"), "required must be a list of property names"
    if "items" in raw:
        yield from schema_problems(raw["items"], (*at, "items"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Compiling


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: _is_int(v) or (isinstance(v, float) and v.is_integer()),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
# The Python types of decoded JSON for each JSON Schema type (bool is not a number).
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _still_ok(value: Any, loose_integer: bool) -> bool:
    """Values whose Python type is not in the accepted set but that pass anyway: ones the
    scanner could not read, and whole floats (3.0) for an integer."""
    if value is UNKNOWN:
        return True
    return loose_integer and type(value) is float and value.is_integer()


def _all_of(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(value: Any, at: At, out: list[Violation]) -> None:
        for inner in checks:
            inner(value, at, out)

    return check


def render_path(at: At) -> str:
    """The text of a path: ("properties", "products"), 0) → `properties.products[0]`."""
    if isinstance(at, str):
        return at
    parent, key = at
    text = render_path(parent)
    return paths.item(text, key) if isinstance(key, int) else paths.child(text, key)


def compile_schema(
    schema: Mapping[str, Any],
    config: NamingConfig,
    *,
    canonical: Callable[[str], str] | None = None,
) -> Check:
    """A check for values against a normalized, valid schema. `canonical` maps an object key to
    the name the schema knows it by (reserved traits: `firstName` is `first_name`)."""
    return _Compiler(config, canonical).compile(schema)


class _Compiler:
    def __init__(self, config: NamingConfig, canonical: Callable[[str], str] | None) -> None:
        self.config = config
        self.canonical = canonical

    def report(
        self,
        out: list[Violation],
        rule: str,
        message: str,
        where: str,
        suggestion: str | None = None,
    ) -> None:
        found = violation(rule, message, self.config, path=where, suggestion=suggestion)
        if found is not None:
            out.append(found)

    def compile(self, schema: Mapping[str, Any]) -> Check:
        declared = _declared_types(schema)
        checks = [
            c
            for c in (
                self._enum(schema),
                self._string(schema),
                self._number(schema),
                self._object(schema),
                self._array(schema),
            )
            if c is not None
        ]
        if not declared:
            return _all_of(checks)
        accepted = frozenset(t for name in declared for t in _PYTHON_TYPES[name])
        loose_integer = "integer" in declared and "number" not in declared
        expected = " or ".join(_TYPE_NAMES[t] for t in declared)
        then = _all_of(checks) if checks else None

        def check(value: Any, at: At, out: list[Violation]) -> None:
            if type(value) not in accepted and not _still_ok(value, loose_integer):
                message, fix = _type_message(value, expected, declared)
                self.report(out, "property-type", message, render_path(at), fix)
            elif then is not None:
                then(value, at, out)

        return check

    def _enum(self, schema: Mapping[str, Any]) -> Check | None:
        if "enum" not in schema and "const" not in schema:
            return None
        allowed = list(schema["enum"]) if "enum" in schema else [schema["const"]]
        keys = frozenset(_enum_key(v) for v in allowed)
        shown = ", ".join(json.dumps(v) for v in allowed[:10]) + (
            ", ..." if len(allowed) > 10 else ""
        )

        def check(value: Any, at: At, out: list[Violation]) -> None:
            if value is UNKNOWN or _enum_key(value) in keys:
                return
            fix = _enum_fix(value, allowed)
            hint = f"; did you mean {json.dumps(fix)}?" if fix is not None else ""
            message = f"{_show(value)} is not one of the allowed values: {shown}{hint}"
            self.report(out, "property-enum", message, render_path(at), fix)

        return check

    def _string(self, schema: Mapping[str, Any]) -> Check | None:
        pattern = compile_pattern(schema["pattern"]) if "pattern" in schema else None
        fmt: str | None = schema.get("format")
        low, high = schema.get("minLength"), schema.get("maxLength")
        if pattern is None and fmt is None and low is None and high is None:
            return None

        def check(value: Any, at: At, out: list[Violation]) -> None:
            if not isinstance(value, str):
                return
            if _outside(len(value), low, high):
                message = f"{_show(value)} has {len(value)} characters; {_bounds(low, high)}"
                self.report(out, "property-length", message, render_path(at))
            if pattern is not None:
                self._pattern(pattern, value, render_path(at), out)
            if fmt is not None and not _FORMAT_TESTS[fmt](value):
                message = f"{_show(value)} is not {_FORMAT_NAMES[fmt]}"
                self.report(out, "property-format", message, render_path(at))

        return check

    def _pattern(self, pattern: SafePattern, value: str, where: str, out: list[Violation]) -> None:
        matched = pattern.matches(value)
        if matched:
            return
        if matched is None:
            message = (
                f"the value has {len(value)} characters; values checked against the pattern "
                f"{pattern.source} may have at most {pattern.max_length}"
            )
        else:
            message = f"{_show(value)} does not match the pattern {pattern.source}"
        self.report(out, "property-pattern", message, where)

    def _number(self, schema: Mapping[str, Any]) -> Check | None:
        limits = [(schema[name], test, text) for name, test, text in _RANGE_TESTS if name in schema]
        if not limits:
            return None

        def check(value: Any, at: At, out: list[Violation]) -> None:
            if not _is_number(value):
                return
            for limit, test, text in limits:
                if not test(value, limit):
                    message = f"{_show(value)} is {text} {limit}"
                    self.report(out, "property-range", message, render_path(at))

        return check

    def _object(self, schema: Mapping[str, Any]) -> Check | None:
        canonical = self.canonical
        properties = {
            canonical(k) if canonical else k: self.compile(v)
            for k, v in schema.get("properties", {}).items()
        }
        required = [canonical(k) if canonical else k for k in schema.get("required", ())]
        closed = schema.get("additionalProperties") is False
        if not properties and not required and not closed:
            return None

        def check(value: Any, at: At, out: list[Violation]) -> None:
            if not isinstance(value, dict):
                return
            names = {canonical(k): k for k in value} if canonical else value
            for name in required:
                if name not in names:
                    message = f"the required property {name!r} is missing"
                    where = render_path((at, name))
                    self.report(out, "property-required", message, where)
            for name, inner in value.items():
                known = canonical(name) if canonical else name
                sub = properties.get(known)
                if sub is not None:
                    sub(inner, (at, name), out)
                elif closed:
                    message = (
                        f"{name!r} is not in the plan, which allows no other properties here: "
                        "add it to the plan or stop sending it"
                    )
                    self.report(out, "property-unplanned", message, render_path((at, name)))

        return check

    def _array(self, schema: Mapping[str, Any]) -> Check | None:
        items = self.compile(schema["items"]) if "items" in schema else None
        low, high = schema.get("minItems"), schema.get("maxItems")
        if items is None and low is None and high is None:
            return None

        def check(value: Any, at: At, out: list[Violation]) -> None:
            if not isinstance(value, list):
                return
            if _outside(len(value), low, high):
                message = f"the array has {len(value)} items; {_bounds(low, high)}"
                self.report(out, "property-length", message, render_path(at))
            if items is not None:
                for index, inner in enumerate(value):
                    items(inner, (at, index), out)

        return check


_RANGE_TESTS: list[tuple[str, Callable[[Any, Any], bool], str]] = [
    ("minimum", lambda v, limit: v >= limit, "below the minimum"),
    ("maximum", lambda v, limit: v <= limit, "above the maximum"),
    ("exclusiveMinimum", lambda v, limit: v > limit, "not above"),
    ("exclusiveMaximum", lambda v, limit: v < limit, "not below"),
]


def _outside(size: int, low: int | None, high: int | None) -> bool:
    return (low is not None and size < low) or (high is not None and size > high)


def _bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"the plan allows {low} to {high}"
    return (
        f"the plan allows at least {low}" if low is not None else f"the plan allows at most {high}"
    )


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_message(value: Any, expected: str, declared: list[str]) -> tuple[str, str | None]:
    fix = _coerced(value, declared)
    message = f"{_show(value)} is {_kind(value)}; the plan says {expected}"
    if fix is not None:
        message += f": send {fix} without quotes"
    return message, fix


def _kind(value: Any) -> str:
    for name in ("boolean", "null", "string", "number", "object", "array"):
        if _TYPE_TESTS[name](value):
            return _TYPE_NAMES[name]
    return type(value).__name__


def _coerced(value: Any, declared: list[str]) -> str | None:
    """The JSON a string should have been, when that is certain ("12.5" for a number)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if ("number" in declared or "integer" in declared) and re.fullmatch(
        r"-?\d+(\.\d+)?([eE][+-]?\d+)?", text
    ):
        number = float(text)
        if "number" in declared or number.is_integer():
            return text
    if "boolean" in declared and text in ("true", "false"):
        return text
    return None


def _enum_key(value: Any) -> tuple[str, Any]:
    if isinstance(value, bool):
        return ("boolean", value)
    if _is_number(value):
        return ("number", value)
    if isinstance(value, str) or value is None:
        return ("scalar", value)
    return ("json", json.dumps(value, sort_keys=True, default=str))


def _enum_fix(value: Any, allowed: list[Any]) -> Any:
    if not isinstance(value, str):
        return None
    matches = [v for v in allowed if isinstance(v, str) and v.casefold() == value.casefold()]
    return matches[0] if len(matches) == 1 else None


_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?([Zz]|[+-]\d\d:?\d\d)?")


def _is_date_time(value: str) -> bool:
    if not _DATE_TIME.fullmatch(value):
        return False
    text = re.sub(r"\.(\d{6})\d+", r".\1", value.upper().replace("Z", "+00:00"))
    return _parses(datetime.datetime.fromisoformat, text)


def _parses(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


_FORMAT_TESTS: dict[str, Callable[[str], bool]] = {
    "date-time": _is_date_time,
    "date": lambda v: (
        bool(re.fullmatch(r"\d{4}-\d\d-\d\d", v)) and _parses(datetime.date.fromisoformat, v)
    ),
    "email": lambda v: len(v) <= 320 and bool(re.fullmatch(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+", v)),
    "uri": lambda v: bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+", v)),
    "uuid": lambda v: bool(
        re.fullmatch(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", v
        )
    ),
}
_FORMAT_NAMES = {
    "date-time": "a date-time (ISO 8601, like 2024-05-01T12:00:00Z)",
    "date": "a date (like 2024-05-01)",
    "email": "an email address",
    "uri": "a URI (like https://example.com/page)",
    "uuid": "a UUID",
}
