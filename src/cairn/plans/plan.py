"""Tracking plans: load one (YAML or JSON, with the built-in libraries it includes), compile it
once, and check messages against it (docs/plans.md).

`CompiledPlan.check` runs on every event of a source with a plan: the naming rules always, then
unplanned events (allow / flag / block), property schemas (flag / omit / block), identify and
group trait schemas, and the plan's `context` schema (b2b-saas requires `context.groupId`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from cairn.plans import paths
from cairn.plans.document import Document, PlanError, load_document, parse_document
from cairn.plans.naming import NamingConfig, Violation, check_message, violation
from cairn.plans.reader import LIBRARIES, RawPlan, Section, read_plan
from cairn.plans.schema import Check, compile_schema

__all__ = [
    "LIBRARIES",
    "CheckResult",
    "CompiledPlan",
    "EventSpec",
    "Modes",
    "Plan",
    "PlanError",
    "apply_omit",
    "check_naming_only",
    "library",
    "load_plan",
    "naming_result",
    "plan_from_json",
]


@dataclass(frozen=True)
class Modes:
    """What happens to unplanned events (allow|flag|block) and to property violations
    (flag|omit|block)."""

    unplanned: str = "allow"
    violations: str = "flag"

    def to_json(self) -> dict[str, str]:
        return {"unplanned": self.unplanned, "violations": self.violations}


@dataclass(frozen=True)
class EventSpec:
    name: str
    description: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)  # JSON Schemas by property name
    required: tuple[str, ...] = ()
    additional_properties: bool = True

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the event's `properties` object."""
        return _object_schema(self.properties, self.required, self.additional_properties)

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"description": self.description} if self.description else {}
        found["properties"] = dict(self.properties)
        found["required"] = list(self.required)
        found["additional_properties"] = self.additional_properties
        return found


@dataclass(frozen=True, eq=False)
class Plan:
    """A plan with its included libraries merged in. Schemas are JSON Schema objects ({} when
    the plan says nothing)."""

    name: str
    description: str = ""
    include: tuple[str, ...] = ()
    events: dict[str, EventSpec] = field(default_factory=dict)
    identify_traits: dict[str, Any] = field(default_factory=dict)
    group_traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    naming: NamingConfig = field(default_factory=NamingConfig)
    modes: Modes = field(default_factory=Modes)
    sources: dict[str, Modes] = field(default_factory=dict)

    def modes_for(self, source_name: str | None) -> Modes:
        """The modes for events of the source called `source_name`."""
        if source_name is None:
            return self.modes
        return self.sources.get(source_name, self.modes)

    def to_json(self) -> dict[str, Any]:
        """The plan in its file format, normalized, with included events written out;
        `plan_from_json(plan.to_json())` is the same plan."""
        found: dict[str, Any] = {"name": self.name}
        if self.description:
            found["description"] = self.description
        found["include"] = list(self.include)
        found["events"] = {name: spec.to_json() for name, spec in self.events.items()}
        for key, schema, inner in (
            ("identify", self.identify_traits, "traits"),
            ("group", self.group_traits, "traits"),
            ("context", self.context, "properties"),
        ):
            if schema:
                found[key] = _section_json(schema, inner)
        found["naming"] = {
            "exceptions": sorted(self.naming.exceptions),
            "extra_verbs": sorted(self.naming.extra_verbs),
            "severity": dict(self.naming.severity),
        }
        found["modes"] = self.modes.to_json()
        found["sources"] = {name: modes.to_json() for name, modes in self.sources.items()}
        return found


def load_plan(path: str | Path) -> Plan:
    """Read a plan file (YAML or JSON). PlanError says what is wrong, with file and line."""
    document = load_document(path)
    return _build(read_plan(document), default_name=Path(path).stem)


def plan_from_json(data: Mapping[str, Any], *, source: str = "<api>") -> Plan:
    """A plan from its JSON form (an API body, a stored version). Errors name `source` and the
    path of the value they are about."""
    return _build(read_plan(Document(source, data)), default_name="plan")


@cache
def library(name: str) -> RawPlan:
    """A built-in event library (`ecommerce`, `b2b-saas`), as written in its YAML file."""
    if name not in LIBRARIES:
        raise KeyError(name)
    text = resources.files("cairn.plans").joinpath(f"libraries/{name}.yaml").read_text("utf-8")
    return read_plan(parse_document(text, f"<library {name}>"), library=True)


def _build(raw: RawPlan, *, default_name: str) -> Plan:
    events: dict[str, Section] = {}
    sections: dict[str, Section | None] = {"identify": None, "group": None, "context": None}
    for part in [*(library(name) for name in raw.include), raw]:
        for name, section in part.events.items():
            events[name] = _merge(events.get(name), section)
        for key, base in sections.items():
            over = getattr(part, key)
            sections[key] = base if over is None else _merge(base, over)
    modes = Modes(**raw.modes)
    return Plan(
        name=raw.name or default_name,
        description=raw.description,
        include=tuple(dict.fromkeys(raw.include)),
        events={name: _event(name, section) for name, section in events.items()},
        identify_traits=_section_schema(sections["identify"]),
        group_traits=_section_schema(sections["group"]),
        context=_section_schema(sections["context"]),
        naming=NamingConfig(
            exceptions=frozenset(raw.naming.get("exceptions", ())),
            extra_verbs=frozenset(raw.naming.get("extra_verbs", ())),
            severity=raw.naming.get("severity", {}),
        ),
        modes=modes,
        sources={name: Modes(**{**modes.to_json(), **s}) for name, s in raw.sources.items()},
    )


def _merge(base: Section | None, over: Section) -> Section:
    """`over` extends `base`: its properties are added or replace base's; its description,
    required list and additional_properties replace base's when it gives them."""
    if base is None:
        return over
    merged = {**base, **over}
    merged["properties"] = {**base.get("properties", {}), **over.get("properties", {})}
    return merged


def _event(name: str, section: Section | None) -> EventSpec:
    section = section or {}
    return EventSpec(
        name=name,
        description=section.get("description", ""),
        properties=section.get("properties", {}),
        required=tuple(section.get("required", ())),
        additional_properties=section.get("additional_properties", True),
    )


def _object_schema(
    properties: Mapping[str, Any], required: Sequence[str], additional: bool
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if not additional:
        schema["additionalProperties"] = False
    return schema


def _section_schema(section: Section | None) -> dict[str, Any]:
    if section is None:
        return {}
    schema = _object_schema(
        section.get("properties", {}),
        section.get("required", ()),
        section.get("additional_properties", True),
    )
    if section.get("description"):
        schema["description"] = section["description"]
    return schema


def _section_json(schema: Mapping[str, Any], inner: str) -> dict[str, Any]:
    found: dict[str, Any] = (
        {"description": schema["description"]} if "description" in schema else {}
    )
    found[inner] = dict(schema.get("properties", {}))
    found["required"] = list(schema.get("required", ()))
    found["additional_properties"] = schema.get("additionalProperties", True)
    return found


# ---------------------------------------------------------------------------------------------
# Checking messages


@dataclass(frozen=True)
class CheckResult:
    """What to do with a message: `accept` (it may still carry warnings), `flag` (store it with
    its violations) or `block` (quarantine it). `omit` lists property paths to remove first."""

    violations: tuple[Violation, ...]
    action: str
    omit: tuple[str, ...] = ()


_TRAIT_ALIASES = {
    "firstname": "first_name",
    "lastname": "last_name",
    "createdat": "created_at",
    "postalcode": "postal_code",
}
_OMITTABLE = frozenset(
    {
        "property-type",
        "property-enum",
        "property-pattern",
        "property-format",
        "property-range",
        "property-length",
        "property-unplanned",
    }
)


def _trait_key(key: str) -> str:
    """Reserved traits are the same in any case and in snake or camel: firstName is first_name."""
    return _TRAIT_ALIASES.get(key.replace("_", "").lower(), key)


def _compile(
    schema: Mapping[str, Any], naming: NamingConfig, *, traits: bool = False
) -> Check | None:
    if not schema:
        return None
    return compile_schema(schema, naming, canonical=_trait_key if traits else None)


class CompiledPlan:
    """A plan compiled for one source: build once, then `check` every message."""

    def __init__(self, plan: Plan, source_name: str | None = None) -> None:
        self.plan = plan
        self.modes = plan.modes_for(source_name)
        self.naming = plan.naming
        self._events = {
            name: compile_schema(spec.schema, plan.naming) for name, spec in plan.events.items()
        }
        self._identify = _compile(plan.identify_traits, plan.naming, traits=True)
        self._group = _compile(plan.group_traits, plan.naming, traits=True)
        self._context = _compile(plan.context, plan.naming)

    def check(self, message: Mapping[str, Any]) -> CheckResult:
        """Every violation of `message`, and the action the source's modes decide."""
        found = check_message(message, self.naming)
        first_planned = len(found)
        kind = message.get("type")
        if kind == "track" or (kind is None and "event" in message):
            self._check_track(message, found)
        elif kind == "identify" and self._identify is not None:
            self._identify(message.get("traits") or {}, "traits", found)
        elif kind == "group" and self._group is not None:
            self._group(message.get("traits") or {}, "traits", found)
        return self._decide(found, found[first_planned:])

    def _check_track(self, message: Mapping[str, Any], found: list[Violation]) -> None:
        event = message.get("event")
        check = self._events.get(event) if isinstance(event, str) else None
        if check is not None:
            properties = message.get("properties")
            check({} if properties is None else properties, "properties", found)
        elif isinstance(event, str) and self.modes.unplanned != "allow":
            text = f"{event!r} is not in the plan {self.plan.name!r}: add it, or fix the name"
            unplanned = violation("unplanned-event", text, self.naming)
            if unplanned is not None:
                found.append(unplanned)
        if self._context is not None:
            self._context(message.get("context") or {}, "context", found)

    def _decide(self, found: list[Violation], planned: list[Violation]) -> CheckResult:
        errors = [v for v in planned if v.severity == "error"]
        unplanned = any(v.rule == "unplanned-event" for v in errors)
        broken = [v for v in errors if v.rule != "unplanned-event"]
        if (unplanned and self.modes.unplanned == "block") or (
            broken and self.modes.violations == "block"
        ):
            return CheckResult(tuple(found), "block")
        omit: tuple[str, ...] = ()
        if self.modes.violations == "omit":
            omit = tuple(dict.fromkeys(v.path for v in broken if v.rule in _OMITTABLE))
        action = "flag" if any(v.severity == "error" for v in found) else "accept"
        return CheckResult(tuple(found), action, omit)


_NO_SETTINGS = NamingConfig()


def check_naming_only(
    message: Mapping[str, Any], config: NamingConfig = _NO_SETTINGS
) -> CheckResult:
    """The check for a source without a plan: naming rules only, flagged on any error."""
    return naming_result(tuple(check_message(message, config)))


_ACCEPTED = CheckResult((), "accept")


def naming_result(found: tuple[Violation, ...]) -> CheckResult:
    """`check_naming_only`'s result for the naming rules' violations `found`."""
    if not found:
        return _ACCEPTED
    return CheckResult(found, "flag" if any(v.severity == "error" for v in found) else "accept")


_OMITTED = object()


def apply_omit(message: Mapping[str, Any], omit: Sequence[str]) -> dict[str, Any]:
    """A copy of `message` without the values at the paths in `omit`. Only the objects and
    arrays on those paths are copied; everything else is shared with `message`."""
    tree: dict[Any, Any] = {}
    for path in sorted(omit, key=len):  # a parent's path is shorter than its children's
        node: Any = tree
        *parents, last = paths.parse_path(path)
        for step in parents:
            node = node.setdefault(step, {})
            if node is _OMITTED:
                break
        else:
            node[last] = _OMITTED
    return dict(_prune(message, tree))


def _prune(value: Any, tree: dict[Any, Any]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: inner if key not in tree else _prune(inner, tree[key])
            for key, inner in value.items()
            if tree.get(key) is not _OMITTED
        }
    if isinstance(value, list):
        return [
            inner if index not in tree else _prune(inner, tree[index])
            for index, inner in enumerate(value)
            if tree.get(index) is not _OMITTED
        ]
    return value
