"""The JSON Schema subset: problems in a plan's schemas, and compiled checks with their paths."""

from __future__ import annotations

from typing import Any

import pytest

from cairn.plans.naming import NamingConfig, Violation
from cairn.plans.schema import UNKNOWN, compile_schema, normalize_schema, schema_problems

_PLAIN = NamingConfig()


def _check(schema: Any, value: Any, config: NamingConfig = _PLAIN) -> list[Violation]:
    found: list[Violation] = []
    compile_schema(normalize_schema(schema), config)(value, "properties", found)
    return found


def _rules(schema: Any, value: Any) -> list[tuple[str, str]]:
    return [(v.rule, v.path) for v in _check(schema, value)]


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ("string", "a", 1),
        ("number", 1.5, "1.5"),
        ("number", 2, True),  # a boolean is not a number
        ("integer", 3.0, 3.5),
        ("boolean", False, 0),
        ("object", {}, []),
        ("array", [], {}),
        ("null", None, 0),
        ({"type": ["string", "null"]}, None, 1),
    ],
)
def test_types(schema: Any, good: Any, bad: Any) -> None:
    assert _check(schema, good) == []
    (found,) = _check(schema, bad)
    assert (found.rule, found.path) == ("property-type", "properties")


def test_type_messages_suggest_the_value_when_certain() -> None:
    (quoted,) = _check("number", "12.50")
    assert quoted.suggestion == "12.50"
    assert "send 12.50 without quotes" in quoted.message
    (flag,) = _check("boolean", "true")
    assert flag.suggestion == "true"
    (word,) = _check("number", "twelve")
    assert word.suggestion is None


def test_enum_and_const() -> None:
    schema = {"type": "string", "enum": ["EUR", "USD"]}
    assert _check(schema, "EUR") == []
    (found,) = _check(schema, "eur")
    assert found.rule == "property-enum"
    assert found.suggestion == "EUR"
    assert _rules({"enum": [1, True]}, 1.0) == []
    assert _rules({"enum": [1]}, True) == [("property-enum", "properties")]
    assert _rules({"const": {"a": [1]}}, {"a": [1]}) == []


def test_strings() -> None:
    schema = {"type": "string", "pattern": "^ord_[0-9]+$", "minLength": 5, "maxLength": 8}
    assert _check(schema, "ord_12") == []
    assert _rules(schema, "ord_123456") == [("property-length", "properties")]
    assert _rules(schema, "order") == [("property-pattern", "properties")]
    assert [v.rule for v in _check(schema, "x")] == ["property-length", "property-pattern"]


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date-time", "2024-05-01T12:00:00.123456789Z", "2024-13-01T12:00:00Z"),
        ("date-time", "2024-05-01T12:00:00+02:00", "yesterday"),
        ("date", "2024-02-29", "2023-02-29"),
        ("email", "ada@example.com", "ada@example"),
        ("uri", "https://example.com/a?b", "/relative"),
        ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567"),
    ],
)
def test_formats(fmt: str, good: str, bad: str) -> None:
    schema = {"type": "string", "format": fmt}
    assert _check(schema, good) == []
    assert _rules(schema, bad) == [("property-format", "properties")]


def test_numbers() -> None:
    schema = {"type": "number", "minimum": 0, "maximum": 5, "exclusiveMaximum": 5}
    assert _check(schema, 0) == []
    assert _rules(schema, -1) == [("property-range", "properties")]
    assert [v.rule for v in _check(schema, 5)] == ["property-range"]
    assert len(_check(schema, 6)) == 2


def test_objects_and_arrays_report_every_problem_with_its_path() -> None:
    schema = {
        "type": "object",
        "properties": {
            "order_id": "string",
            "products": {
                "type": "array",
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "properties": {"price": "number", "sku": "string"},
                    "required": ["sku"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["order_id"],
    }
    value = {
        "products": [{"sku": "a", "price": "9"}, {"price": 1, "color": "red"}, "oops"],
        "extra": True,
    }
    assert _rules(schema, value) == [
        ("property-required", "properties.order_id"),
        ("property-length", "properties.products"),
        ("property-type", "properties.products[0].price"),
        ("property-required", "properties.products[1].sku"),
        ("property-unplanned", "properties.products[1].color"),
        ("property-type", "properties.products[2]"),
    ]


def test_unknown_values_pass_every_check() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "number", "enum": [1]}}}
    assert _check(schema, {"a": UNKNOWN}) == []
    assert _check("string", UNKNOWN) == []


def test_severity_overrides_and_off() -> None:
    config = NamingConfig(severity={"property-type": "warning", "property-enum": "off"})
    schema = {"type": "object", "properties": {"a": "number", "b": {"enum": ["x"]}}}
    assert [(v.rule, v.severity) for v in _check(schema, {"a": "1", "b": "y"}, config)] == [
        ("property-type", "warning")
    ]


def test_canonical_keys_for_reserved_traits() -> None:
    schema = normalize_schema(
        {"type": "object", "properties": {"first_name": "string"}, "required": ["first_name"]}
    )
    check = compile_schema(schema, NamingConfig(), canonical=lambda k: k.replace("N", "_n"))
    found: list[Violation] = []
    check({"firstName": 5}, "traits", found)
    assert [(v.rule, v.path) for v in found] == [("property-type", "traits.firstName")]


@pytest.mark.parametrize(
    ("schema", "where", "message"),
    [
        ("text", (), "unknown type 'text'"),
        (5, (), "a schema is a mapping"),
        ({"typ": "string"}, ("typ",), "did you mean 'type'"),
        ({"$ref": "#/x"}, ("$ref",), "not supported"),
        ({"type": "strin"}, ("type",), "type must be one of"),
        ({"type": "number", "pattern": "^a$"}, ("pattern",), "applies to string values"),
        ({"type": "string", "minimum": 1}, ("minimum",), "applies to number values"),
        ({"minimum": "1"}, ("minimum",), "must be a number"),
        ({"maxLength": -1}, ("maxLength",), "whole number"),
        ({"minimum": 5, "maximum": 1}, ("minimum",), "above maximum"),
        ({"pattern": "(a+)+"}, ("pattern",), "repeated group"),
        ({"pattern": 5}, ("pattern",), "must be text"),
        ({"format": "phone"}, ("format",), "format must be one of"),
        ({"enum": []}, ("enum",), "non-empty list"),
        ({"type": "string", "enum": ["a", 1]}, ("enum", 1), "does not have the type"),
        ({"required": "a"}, ("required",), "list of property names"),
        ({"additionalProperties": {}}, ("additionalProperties",), "true or false"),
        ({"properties": []}, ("properties",), "mapping of names"),
        ({"properties": {"a": {"type": "nope"}}}, ("properties", "a", "type"), "type must be"),
        ({"items": {"items": "nope"}}, ("items", "items"), "unknown type"),
        ({"description": 1}, ("description",), "must be text"),
    ],
)
def test_schema_problems(schema: Any, where: tuple[str | int, ...], message: str) -> None:
    problems = list(schema_problems(schema, ("events", "E", "properties", "p")))
    assert problems, schema
    at, text = problems[0]
    assert at == ("events", "E", "properties", "p", *where)
    assert message in text


def test_shorthand_schemas_normalize() -> None:
    assert (
        list(schema_problems({"type": "object", "properties": {"a": "string", "b": None}}, ()))
        == []
    )
    assert normalize_schema({"items": "number", "properties": {"b": None}}) == {
        "items": {"type": "number"},
        "properties": {"b": {}},
    }
