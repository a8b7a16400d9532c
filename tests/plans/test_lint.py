"""`cairn lint` on plan files and events files, the output formats, and `plans init` templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cairn.plans.lint import Finding, exit_code, lint, lint_events, lint_plan_file, render, summary
from cairn.plans.plan import LIBRARIES, load_plan
from cairn.plans.templates import plan_template

PLAN = """\
name: shop
include: [ecommerce]
events:
  order_refund_requested:
    properties:
      orderId: string
      items:
        type: array
        items:
          type: object
          properties:
            SKU: string
  Email Bounced:
    properties:
      address: {type: string, pattern: "^[a-z]+@[a-z]+[.][a-z]+"}
identify:
  traits:
    firstName: string
    FavoriteColor: string
"""


def test_plan_file_names_are_linted_at_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    findings = lint_plan_file(path)
    assert [(f.line, f.column, f.rule, f.severity) for f in findings] == [
        (4, 3, "event-name-format", "error"),
        (6, 7, "property-snake-case", "error"),
        (12, 13, "property-snake-case", "error"),
        (15, 31, "pattern-bound", "info"),
        (19, 5, "property-snake-case", "error"),
    ]
    assert findings[0].suggestion == "Order Refund Requested"
    assert findings[1].message.startswith("'orderId' is camelCase")
    assert findings[1].suggestion == "order_id"


def test_a_broken_plan_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("events:\n  A Done:\n    properties: {x: money}\nmodes: {unplanned: maybe}\n")
    findings = lint_plan_file(path)
    assert [(f.line, f.rule) for f in findings] == [(3, "plan-invalid"), (4, "plan-invalid")]
    assert exit_code(findings) == 1


def test_events_file(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [
        {"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "total": 3}},
        {"type": "track", "event": "order_completed", "properties": {"total": "3"}},
        {
            "batch": [
                {"type": "identify", "traits": {"FirstName": "Ada"}},
                {"type": "track", "event": "Video Played"},
            ]
        },
    ]
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\n\nnot json\n[1]\n")
    plain = [(f.line, f.rule) for f in lint_events(events, None)]
    assert plain == [
        (2, "event-name-format"),
        (3, "property-snake-case"),
        (5, "events-invalid"),
        (6, "events-invalid"),
    ]
    plan = load_plan(_write(tmp_path, "shop.yaml", "include: [ecommerce]\n"))
    planned = [(f.line, f.rule) for f in lint_events(events, plan)]
    assert (2, "unplanned-event") in planned
    assert (2, "property-required") not in planned  # an unplanned event has no schema
    assert (3, "unplanned-event") in planned
    message = next(f.message for f in lint_events(events, None) if f.line == 3)
    assert message.startswith("identify: traits.FirstName: ")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lint_dispatches_on_the_target(tmp_path: Path) -> None:
    plan = _write(tmp_path, "plan.yaml", "events: {bad_event: }\n")
    events = _write(tmp_path, "sample.jsonl", '{"type": "track", "event": "bad_event"}\n')
    source = tmp_path / "src"
    source.mkdir()
    _write(source, "app.py", "import analytics\nanalytics.track('u', 'bad_event')\n")
    assert {f.file for f in lint(plan, None, None)} == {str(plan)}
    assert {f.file for f in lint(events, None, None)} == {str(events)}
    assert {f.file for f in lint(source, None, None)} == {str(source / "app.py")}
    both = lint(source, events, plan)
    assert {f.file for f in both} == {str(source / "app.py"), str(events)}
    assert "unplanned-event" not in {f.rule for f in both}  # the plan lists bad_event
    broken = _write(tmp_path, "broken.yaml", "events: [\n")
    assert [f.rule for f in lint(source, None, broken)] == ["plan-invalid"]


def test_output_formats() -> None:
    findings = [
        Finding(
            "src/app.py", 3, 7, "event-name-format", "error", "'a_b' is snake_case, 100%", "A B"
        ),
        Finding("src/app.py", 9, 1, "event-name-dynamic", "warning", "line one\nline two"),
        Finding("plan.yaml", 2, 5, "pattern-bound", "info", "a note"),
    ]
    assert render(findings, "text").splitlines()[0] == (
        "src/app.py:3:7 event-name-format [error] 'a_b' is snake_case, 100%"
    )
    assert render(findings, "github").splitlines() == [
        "::error file=src/app.py,line=3,col=7,title=event-name-format::'a_b' is snake_case, 100%25",
        "::warning file=src/app.py,line=9,col=1,title=event-name-dynamic::line one%0Aline two",
        "::notice file=plan.yaml,line=2,col=5,title=pattern-bound::a note",
    ]
    data = json.loads(render(findings, "json"))
    assert (data["error"], data["warning"], data["info"]) == (1, 1, 1)
    assert data["findings"][0]["suggestion"] == "A B"
    assert summary(findings) == "1 error, 1 warning, 1 info in 2 file(s)."
    assert summary([]) == "No problems found."
    assert exit_code(findings[1:]) == 0


@pytest.mark.parametrize("expand", [False, True], ids=["include", "expand"])
@pytest.mark.parametrize("template", LIBRARIES)
def test_templates_are_clean_plans(tmp_path: Path, template: str, expand: bool) -> None:
    path = _write(tmp_path, "plan.yaml", plan_template(template, name="mine", expand=expand))
    assert lint_plan_file(path) == []
    plan = load_plan(path)
    assert plan.name == "mine"
    assert plan.include == (() if expand else (template,))
    from cairn.plans.plan import plan_from_json

    library_plan = plan_from_json({"include": [template]})
    assert plan.to_json()["events"] == library_plan.to_json()["events"]
    assert plan.context == library_plan.context


def test_lint_rules_are_documented() -> None:
    from cairn.plans.lint import LINT_RULES

    docs = (Path(__file__).parents[2] / "docs" / "plans.md").read_text()
    for rule in LINT_RULES:
        assert f"`{rule}`" in docs, rule
