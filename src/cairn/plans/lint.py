"""The linter behind `cairn lint`: plan files, sample events and application source, checked
against the naming rules and a plan, as findings at `file:line:column`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cairn.plans.document import PlanError, load_document
from cairn.plans.jssource import scan_script
from cairn.plans.naming import (
    NamingConfig,
    Violation,
    check_event_name,
    check_property_name,
    violation,
)
from cairn.plans.patterns import MAX_VALUE_LENGTH, PatternError, compile_pattern
from cairn.plans.plan import CheckResult, CompiledPlan, Modes, Plan, check_naming_only, load_plan
from cairn.plans.pysource import scan_python
from cairn.plans.sources import PYTHON_SUFFIXES, Call, source_files

__all__ = [
    "FORMATS",
    "LINT_RULES",
    "Finding",
    "exit_code",
    "lint",
    "lint_events",
    "lint_plan_file",
    "lint_sources",
    "render",
    "summary",
]

FORMATS = ("text", "json", "github")
PLAN_SUFFIXES = (".yaml", ".yml", ".json")
EVENT_SUFFIXES = (".jsonl", ".ndjson")

# Rules of the linter itself, beside naming.RULES.
LINT_RULES: dict[str, tuple[str, str]] = {
    "plan-invalid": (
        "error",
        "The plan file cannot be used: bad YAML or JSON, a wrong key or schema.",
    ),
    "pattern-bound": (
        "info",
        "Strings longer than this pattern's bound fail it; anchor it with ^ or simplify it.",
    ),
    "events-invalid": ("error", "A line of the events file is not a JSON message."),
    "source-unreadable": ("warning", "A source file could not be read or parsed; it was skipped."),
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    column: int
    rule: str
    severity: str
    message: str
    suggestion: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "suggestion": self.suggestion,
        }


def _from_violation(file: str, at: tuple[int, int], v: Violation, subject: str = "") -> Finding:
    where = f"{v.path}: " if v.path else ""
    return Finding(
        file, at[0], at[1], v.rule, v.severity, f"{subject}{where}{v.message}", v.suggestion
    )


def _plan_errors(error: PlanError) -> list[Finding]:
    return [
        Finding(e.file or "<plan>", e.line or 1, e.column or 1, "plan-invalid", "error", e.message)
        for e in error.errors
    ]


def lint(target: Path | None, events: Path | None, plan_file: Path | None) -> list[Finding]:
    """What `cairn lint` reports: `target` is a plan file, an events file (.jsonl) or source
    (a folder or a file); `events` a JSON-lines file of messages; `plan_file` the plan to check
    events and source against."""
    findings: list[Finding] = []
    plan: Plan | None = None
    if plan_file is not None:
        try:
            plan = load_plan(plan_file)
        except PlanError as exc:
            return _plan_errors(exc)
    if target is not None and target.is_file() and target.suffix.lower() in PLAN_SUFFIXES:
        findings += lint_plan_file(target)
    elif target is not None and target.is_file() and target.suffix.lower() in EVENT_SUFFIXES:
        findings += lint_events(target, plan)
    elif target is not None:
        findings += lint_sources(target, plan)
    if events is not None:
        findings += lint_events(events, plan)
    return sorted(findings, key=lambda f: (f.file, f.line, f.column, f.rule))


# ---------------------------------------------------------------------------------------------
# Plan files


def lint_plan_file(path: Path) -> list[Finding]:
    """Problems that make the plan unusable, else its names that break the naming rules and
    patterns whose length bound is short."""
    try:
        plan = load_plan(path)
    except PlanError as exc:
        return _plan_errors(exc)
    document = load_document(path)
    data = document.data if isinstance(document.data, dict) else {}
    found: list[Finding] = []

    def report(at: tuple[str | int, ...], v: Violation) -> None:
        line, column = document.position(at)
        found.append(_from_violation(str(path), (line or 1, column or 1), v))

    for name, event in (data.get("events") or {}).items():
        for v in check_event_name(name, plan.naming):
            report(("events", name), v)
        if isinstance(event, dict):
            _schema_names(
                event.get("properties"), ("events", name, "properties"), plan.naming, False, report
            )
    for section in ("identify", "group"):
        raw = data.get(section)
        if isinstance(raw, dict):
            _schema_names(raw.get("traits"), (section, "traits"), plan.naming, True, report)
    return found


Report = Callable[[tuple[str | int, ...], Violation], None]


def _schema_names(
    properties: Any,
    at: tuple[str | int, ...],
    naming: NamingConfig,
    reserved: bool,
    report: Report,
) -> None:
    """Check the property names in a plan's `properties` mapping and the schemas inside it."""
    if not isinstance(properties, dict):
        return
    for name, schema in properties.items():
        here = (*at, name)
        for v in check_property_name(name, naming, reserved=reserved):
            report(here, v)
        if not isinstance(schema, dict):
            continue
        _pattern_bound(schema, here, report)
        _schema_names(schema.get("properties"), (*here, "properties"), naming, reserved, report)
        items = schema.get("items")
        if isinstance(items, dict):
            _pattern_bound(items, (*here, "items"), report)
            inner = (*here, "items", "properties")
            _schema_names(items.get("properties"), inner, naming, reserved, report)


def _pattern_bound(schema: dict[str, Any], at: tuple[str | int, ...], report: Report) -> None:
    if not isinstance(schema.get("pattern"), str):
        return
    try:
        bound = compile_pattern(schema["pattern"]).max_length
    except PatternError:
        return
    if bound < MAX_VALUE_LENGTH:
        text = (
            f"strings longer than {bound} characters fail the pattern {schema['pattern']} "
            "(the bound keeps matching fast); anchor it with ^ or use fewer unbounded repeats "
            "to raise it"
        )
        found = Violation("pattern-bound", LINT_RULES["pattern-bound"][0], text)
        report((*at, "pattern"), found)


# ---------------------------------------------------------------------------------------------
# Events


def _lint_plan(plan: Plan) -> CompiledPlan:
    """The plan as the linter applies it: every unplanned event and every violation is
    reported, whatever the plan's modes do in the pipeline."""
    return CompiledPlan(replace(plan, modes=Modes("flag", "flag"), sources={}))


def lint_events(path: Path, plan: Plan | None) -> list[Finding]:
    """Check each message of a JSON-lines file (a line may also be a `{"batch": [...]}`)."""
    compiled = _lint_plan(plan) if plan is not None else None
    naming = plan.naming if plan is not None else NamingConfig()
    found: list[Finding] = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [Finding(str(path), 1, 1, "events-invalid", "error", f"cannot read the file: {exc}")]
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        for message in _messages(str(path), number, line, found):
            result = compiled.check(message) if compiled else check_naming_only(message, naming)
            found += [
                _from_violation(str(path), (number, 1), v, _subject(message))
                for v in result.violations
            ]
    return found


def _messages(file: str, number: int, line: str, found: list[Finding]) -> Iterator[dict[str, Any]]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        found.append(
            Finding(file, number, exc.colno, "events-invalid", "error", f"not JSON: {exc.msg}")
        )
        return
    items = value.get("batch") if isinstance(value, dict) and "batch" in value else [value]
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict):
            yield item
        else:
            found.append(
                Finding(file, number, 1, "events-invalid", "error", "a message is a JSON object")
            )


def _subject(message: dict[str, Any]) -> str:
    if message.get("type", "track") == "track" and isinstance(message.get("event"), str):
        return f"{message['event']!r}: "
    return f"{message.get('type', 'message')}: "


# ---------------------------------------------------------------------------------------------
# Source


def lint_sources(root: Path, plan: Plan | None) -> list[Finding]:
    """Tracking calls in Python, JavaScript and TypeScript files under `root`."""
    compiled = _lint_plan(plan) if plan is not None else None
    naming = plan.naming if plan is not None else NamingConfig()
    found: list[Finding] = []
    for path in source_files(root):
        try:
            calls = _scan(path)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
            reason = f"skipped: {exc.__class__.__name__}: {exc}"
            found.append(
                Finding(
                    str(path),
                    getattr(exc, "lineno", None) or 1,
                    1,
                    "source-unreadable",
                    "warning",
                    reason,
                )
            )
            continue
        for call in calls:
            found += _call_findings(str(path), call, compiled, naming)
    return found


def _scan(path: Path) -> list[Call]:
    text = path.read_text("utf-8")
    return scan_python(text, str(path)) if path.suffix in PYTHON_SUFFIXES else scan_script(text)


def _call_findings(
    file: str, call: Call, compiled: CompiledPlan | None, naming: NamingConfig
) -> Iterable[Finding]:
    message = call.message()
    result: CheckResult = (
        compiled.check(message) if compiled else check_naming_only(message, naming)
    )
    for v in result.violations:
        if v.path.startswith("context") or (v.rule == "property-required" and not call.complete):
            continue  # the source does not say what the call's context or spread holds
        yield _from_violation(file, call.where(v.path), v)
    if call.dynamic_event and call.event_position is not None:
        text = (
            "the event name is built at run time: keep names fixed and send the varying part "
            "as a property"
        )
        dynamic = violation("event-name-dynamic", text, naming)
        if dynamic is not None:
            yield _from_violation(file, call.event_position, dynamic)


# ---------------------------------------------------------------------------------------------
# Output


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when any finding is an error, else 0."""
    return 1 if any(f.severity == "error" for f in findings) else 0


def summary(findings: list[Finding]) -> str:
    """One line: how many errors, warnings and notes in how many files."""
    if not findings:
        return "No problems found."
    parts = [f"{n} {level}{'s' if n != 1 else ''}" for level, n in _counts(findings).items() if n]
    return ", ".join(parts) + f" in {len({f.file for f in findings})} file(s)."


def _counts(findings: list[Finding]) -> dict[str, int]:
    return {
        level: sum(f.severity == level for f in findings) for level in ("error", "warning", "info")
    }


def render(findings: list[Finding], output: str) -> str:
    """Findings as `text` (`file:line:col rule [severity] message`), `json`, or `github`
    workflow commands (annotations on the pull request)."""
    if output == "json":
        counts = _counts(findings)
        return json.dumps({"findings": [f.to_json() for f in findings], **counts}, indent=2) + "\n"
    if output == "github":
        return "".join(_github(f) + "\n" for f in findings)
    return "".join(
        f"{f.file}:{f.line}:{f.column} {f.rule} [{f.severity}] {f.message}\n" for f in findings
    )


def _github(finding: Finding) -> str:
    command = {"error": "error", "warning": "warning"}.get(finding.severity, "notice")
    properties = ",".join(
        f"{key}={_escape(str(value), True)}"
        for key, value in (
            ("file", finding.file),
            ("line", finding.line),
            ("col", finding.column),
            ("title", finding.rule),
        )
    )
    return f"::{command} {properties}::{_escape(finding.message, False)}"


def _escape(text: str, is_property: bool) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if is_property else text
