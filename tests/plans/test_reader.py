"""Malformed plan files: every problem reported with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.plans.document import MAX_FILE_BYTES, PlanError, parse_document
from cairn.plans.plan import load_plan, plan_from_json


def _error(tmp_path: Path, text: str, name: str = "plan.yaml") -> PlanError:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    return caught.value


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: shop\nevents:\n  Order Completed: [\n", 4, "not valid YAML"),
        ("name: shop\nevents:\n\tOrder Completed: {}\n", 3, "not valid YAML"),
        ("name: a\nname: b\n", 2, "duplicate key 'name'"),
        ("name: shop\nevnts: {}\n", 2, "unknown key 'evnts' in a plan; did you mean 'events'?"),
        (
            "include: [ecomerce]\n",
            1,
            "unknown library 'ecomerce' in include; did you mean 'ecommerce'?",
        ),
        ("events:\n  Order Completed:\n    propertes: {}\n", 3, "did you mean 'properties'?"),
        (
            "events:\n  Order Completed:\n    properties:\n      total: {type: money}\n",
            4,
            "type must be one of",
        ),
        (
            "events:\n  Order Completed:\n    properties:\n      id:\n        type: string\n"
            "        pattern: '(a+)+$'\n",
            6,
            "repeated group",
        ),
        (
            "events:\n  Order Completed:\n    properties:\n      id: {type: string, pattern: '['}\n",
            4,
            "does not compile",
        ),
        ("events:\n  A Done:\n    required: order_id\n", 3, "required must be a list"),
        ("events:\n  A Done:\n    additional_properties: nope\n", 3, "true or false"),
        ("modes: {unplanned: warn}\n", 1, "unplanned must be one of allow, flag, block"),
        (
            "sources:\n  web:\n    violations: drop\n",
            3,
            "violations must be one of flag, omit, block",
        ),
        (
            "naming:\n  severity:\n    event-name-tense: off\n",
            3,
            "did you mean 'event-name-past-tense'?",
        ),
        ("naming:\n  severity:\n    event-name-format: loud\n", 3, "error, warning, info or off"),
        ("naming:\n  exceptions: signup\n", 2, "list of names"),
        ("- just\n- a list\n", 1, "a plan must be a mapping"),
        ("", None, "the plan is empty"),
        ("name: !!python/object:os.system x\n", 1, "not valid YAML"),
        ("events:\n  ? [a, b]\n  : {}\n", 2, "a key must be plain text"),
    ],
)
def test_malformed_yaml(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    error = _error(tmp_path, text)
    assert error.file == str(tmp_path / "plan.yaml")
    assert error.line == line
    assert message in error.message
    assert str(error).startswith(f"{tmp_path / 'plan.yaml'}:{line}: " if line else str(tmp_path))


def test_every_problem_is_collected(tmp_path: Path) -> None:
    error = _error(
        tmp_path,
        "name: shop\n"
        "events:\n"
        "  Order Completed:\n"
        "    properties:\n"
        "      total: {type: numbr}\n"
        "      currency: {type: string, patern: '^[A-Z]{3}$'}\n"
        "modes: {violations: drop}\n",
    )
    assert [(e.line, e.message.split(":")[0]) for e in error.errors] == [
        (
            5,
            "type must be one of string, number, integer, boolean, object, array, null, or a list of them",
        ),
        (6, "unknown schema keyword 'patern' (did you mean 'pattern'?)"),
        (7, "violations must be one of flag, omit, block"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            '{\n  "name": "shop",\n  "events": {\n    "A Done": {"properties": {"x": "money"}}\n  }\n}\n',
            4,
            "unknown type 'money'",
        ),
        ('{\n  "name": "shop",\n  "events": \n}\n', 4, "not valid JSON"),
        ('{"name": "a", "name": "b"}', None, "duplicate key 'name'"),
        ('{\n\t"name": "shop",\n\t"evnts": {}\n}\n', None, "did you mean 'events'?"),
    ],
)
def test_malformed_json(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    error = _error(tmp_path, text, "plan.json")
    assert error.line == line
    assert message in error.message


def test_json_from_the_api_names_the_path() -> None:
    with pytest.raises(PlanError) as caught:
        plan_from_json(
            {"events": {"A Done": {"properties": {"x": {"type": "money"}}}}}, source="PUT"
        )
    assert str(caught.value).startswith("PUT: events.A Done.properties.x.type: type must be")


def test_yaml_keeps_words_as_text(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "events:\n  Country Chosen:\n    properties:\n"
        "      country: {enum: [NO, SE, yes, on]}\n      since: {enum: [2024-01-01]}\n"
        "      big: {type: number, maximum: 1e6}\n"
    )
    properties = load_plan(path).events["Country Chosen"].properties
    assert properties["country"]["enum"] == ["NO", "SE", "yes", "on"]
    assert properties["since"]["enum"] == ["2024-01-01"]
    assert properties["big"]["maximum"] == 1_000_000


def test_aliases_cannot_expand_without_end(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{', '.join(['*' + previous] * 10)}]\n"
    error = _error(tmp_path, bomb)
    assert "aliases expand too far" in error.message


def test_yaml_merge_keys_work(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "events:\n"
        "  Cart Viewed:\n    properties: &cart\n      cart_id: string\n"
        "  Cart Shared:\n    properties:\n      <<: *cart\n      share_via: string\n"
    )
    assert set(load_plan(path).events["Cart Shared"].properties) == {"cart_id", "share_via"}


def test_unreadable_files(tmp_path: Path) -> None:
    assert "cannot read" in _error_for_missing(tmp_path).message
    (tmp_path / "big.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(PlanError, match="larger than"):
        load_plan(tmp_path / "big.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(tmp_path / "latin.yaml")


def _error_for_missing(tmp_path: Path) -> PlanError:
    with pytest.raises(PlanError) as caught:
        load_plan(tmp_path / "missing.yaml")
    return caught.value


def test_positions_of_keys() -> None:
    document = parse_document(
        "name: x\nevents:\n  A Done:\n    properties:\n      b: string\n", "f"
    )
    assert document.position(("events", "A Done", "properties", "b")) == (5, 7)
    assert document.position(("events", "A Done", "properties", "b", "type")) == (5, 7)
    assert document.position(("nowhere",)) == (1, 1)
