"""Checking the shape of a plan document and reading it into normalized sections.

Every problem in a file is collected, each with the line of the key it is about; the first one is
raised as a `PlanError` that carries them all in `errors`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from cairn.plans.document import Document, Location, PlanError
from cairn.plans.naming import LEVELS, RULES
from cairn.plans.schema import normalize_schema, schema_problems

__all__ = [
    "LIBRARIES",
    "UNPLANNED_MODES",
    "VIOLATION_MODES",
    "RawPlan",
    "read_plan",
]

LIBRARIES = ("ecommerce", "b2b-saas")
UNPLANNED_MODES = ("allow", "flag", "block")
VIOLATION_MODES = ("flag", "omit", "block")

_TOP = (
    "name",
    "description",
    "include",
    "events",
    "identify",
    "group",
    "context",
    "naming",
    "modes",
    "sources",
)
_EVENT = ("description", "properties", "required", "additional_properties")
_TRAITS = ("description", "traits", "required", "additional_properties")
_NAMING = ("exceptions", "extra_verbs", "severity")
_MODES = ("unplanned", "violations")

Section = dict[str, Any]  # description?, properties (normalized), required?, additional_properties?


@dataclass
class RawPlan:
    """A plan as written, checked and normalized; includes are not merged yet."""

    name: str | None = None
    description: str = ""
    include: list[str] = field(default_factory=list)
    events: dict[str, Section] = field(default_factory=dict)
    identify: Section | None = None
    group: Section | None = None
    context: Section | None = None
    naming: dict[str, Any] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)


def read_plan(document: Document, *, library: bool = False) -> RawPlan:
    """The plan in `document`, or PlanError listing every problem in it."""
    reader = _Reader(document)
    plan = reader.plan(library)
    if reader.problems:
        first = reader.problems[0]
        first.errors = tuple(reader.problems)
        raise first
    return plan


class _Reader:
    def __init__(self, document: Document) -> None:
        self.document = document
        self.problems: list[PlanError] = []

    def problem(self, at: Location, message: str) -> None:
        line, column = self.document.position(at)
        if line is None and at:
            message = f"{'.'.join(str(step) for step in at)}: {message}"
        self.problems.append(PlanError(message, self.document.file, line, column))

    def mapping(
        self, value: Any, at: Location, allowed: tuple[str, ...] | None, what: str
    ) -> dict[str, Any]:
        """`value` as a mapping whose keys are all in `allowed` (None: any key)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(at, f"{what} must be a mapping")
            return {}
        for key in value:
            if allowed is not None and key not in allowed:
                self.problem((*at, key), _unknown(key, allowed, what))
        return value

    def text(self, value: Any, at: Location, what: str) -> str:
        if not isinstance(value, str):
            self.problem(at, f"{what} must be text")
            return ""
        return value

    def names(self, value: Any, at: Location, what: str) -> list[str]:
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return list(value)
        self.problem(at, f"{what} must be a list of names")
        return []

    def plan(self, library: bool) -> RawPlan:
        top = self.mapping(self.document.data, (), _TOP, "a plan")
        if self.document.data is None:
            self.problem((), "the plan is empty: write at least `name` and `events`")
        plan = RawPlan()
        if "name" in top:
            plan.name = self.text(top["name"], ("name",), "name") or None
        if "description" in top:
            plan.description = self.text(top["description"], ("description",), "description")
        if "include" in top:
            plan.include = self.include(top["include"], library)
        events = self.mapping(top.get("events"), ("events",), None, "events")
        plan.events = {name: self.event(name, value) for name, value in events.items()}
        for key in ("identify", "group"):
            if key in top:
                setattr(plan, key, self.section(top[key], (key,), _TRAITS, "traits", key))
        if "context" in top:
            plan.context = self.section(
                top["context"], ("context",), _EVENT, "properties", "context"
            )
        plan.naming = self.naming(top.get("naming"))
        plan.modes = self.modes(top.get("modes"), ("modes",))
        sources = top.get("sources")
        if sources is not None and not isinstance(sources, dict):
            self.problem(("sources",), "sources must map source names to modes")
        elif sources:
            plan.sources = {str(k): self.modes(v, ("sources", k)) for k, v in sources.items()}
        return plan

    def include(self, value: Any, library: bool) -> list[str]:
        if library:
            self.problem(("include",), "a library cannot include another")
            return []
        names = self.names([value] if isinstance(value, str) else value, ("include",), "include")
        for index, name in enumerate(names):
            if name not in LIBRARIES:
                self.problem(("include", index), _unknown(name, LIBRARIES, "include", "library"))
        return [n for n in names if n in LIBRARIES]

    def event(self, name: str, value: Any) -> Section:
        if not name.strip():
            self.problem(("events", name), "an event name cannot be empty")
        return self.section(value, ("events", name), _EVENT, "properties", f"event {name!r}")

    def section(
        self, value: Any, at: Location, allowed: tuple[str, ...], key: str, what: str
    ) -> Section:
        raw = self.mapping(value, at, allowed, what)
        section: Section = {"properties": self.properties(raw.get(key), (*at, key))}
        if "description" in raw:
            section["description"] = self.text(
                raw["description"], (*at, "description"), "description"
            )
        if "required" in raw:
            section["required"] = self.names(raw["required"], (*at, "required"), "required")
        if "additional_properties" in raw:
            allowed_more = raw["additional_properties"]
            if not isinstance(allowed_more, bool):
                self.problem(
                    (*at, "additional_properties"), "additional_properties must be true or false"
                )
            section["additional_properties"] = allowed_more is not False
        return section

    def properties(self, value: Any, at: Location) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(at, "properties must map property names to schemas")
            return {}
        found: dict[str, Any] = {}
        for name, schema in value.items():
            problems = list(schema_problems(schema, (*at, name)))
            for where, message in problems:
                self.problem(where, message)
            if not problems:
                found[name] = normalize_schema(schema)
        return found

    def naming(self, value: Any) -> dict[str, Any]:
        raw = self.mapping(value, ("naming",), _NAMING, "naming")
        naming: dict[str, Any] = {}
        for key in ("exceptions", "extra_verbs"):
            if key in raw:
                naming[key] = self.names(raw[key], ("naming", key), key)
        severity = self.mapping(
            raw.get("severity"), ("naming", "severity"), tuple(RULES), "severity"
        )
        naming["severity"] = {}
        for rule, level in severity.items():
            if level not in (*LEVELS, "off"):
                self.problem(
                    ("naming", "severity", rule), "a severity is error, warning, info or off"
                )
            elif rule in RULES:
                naming["severity"][rule] = level
        return naming

    def modes(self, value: Any, at: Location) -> dict[str, str]:
        raw = self.mapping(value, at, _MODES, "modes")
        modes: dict[str, str] = {}
        for key, allowed in (("unplanned", UNPLANNED_MODES), ("violations", VIOLATION_MODES)):
            if key not in raw:
                continue
            if raw[key] in allowed:
                modes[key] = raw[key]
            else:
                self.problem((*at, key), f"{key} must be one of {', '.join(allowed)}")
        return modes


def _unknown(key: str, allowed: tuple[str, ...], what: str, kind: str = "key") -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = f" (use {', '.join(allowed)})" if len(allowed) <= 10 and not close else ""
    return f"unknown {kind} {key!r} in {what}{hint}{listed}"
