"""An automation's definition: read from its JSON form (or a YAML file of the same shape), checked,
and turned into typed steps. Every error names the path it is about (`/steps/2/then/0/wait`) and,
for a YAML file, the line.

Steps are addressed by their path inside the definition: "0", "2/then/1". A run remembers the path
of the step it is at, under the version it started with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cairn.errors import BadRequest
from cairn.finder.tree import Condition, ConditionError, from_json, where_from_json
from cairn.ids import parse_int

__all__ = [
    "STATES",
    "Branch",
    "Definition",
    "DefinitionError",
    "Frequency",
    "Message",
    "SetTraits",
    "Step",
    "Track",
    "Trigger",
    "Wait",
    "WaitUntil",
    "Webhook",
    "duration_ms",
    "next_step",
    "parse_definition",
    "step_at",
]

STATES = ("draft", "live", "paused")
MAX_STEPS = 200
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"(\d{1,9})\s*([smhdw])")
_KEYS = {"name", "state", "trigger", "audience", "frequency", "goal", "exit", "steps",
         "description"}  # fmt: skip
_NOTHING = object()


class DefinitionError(BadRequest):
    """A definition that cannot be used: what is wrong, at which path (and line, from YAML)."""

    code = "invalid_automation"

    def __init__(self, message: str, *, at: str, line: int | None = None) -> None:
        where = f" at {at or '/'}" + (f" (line {line})" if line is not None else "")
        super().__init__(f"{message}{where}")
        self.at = at or "/"
        self.line = line
        self.reason = message


@dataclass(frozen=True)
class Trigger:
    """`event` (with `where`), `segment` (on enter or exit) or `trait` (with optional from/to)."""

    kind: str
    name: str
    where: Condition | None = None
    on: str = "enter"
    from_value: Any = _NOTHING
    to_value: Any = _NOTHING

    def matches_change(self, old: Any, new: Any) -> bool:
        if self.from_value is not _NOTHING and old != self.from_value:
            return False
        return self.to_value is _NOTHING or new == self.to_value


@dataclass(frozen=True)
class Frequency:
    """every_time, once, once_per (`window_ms`) or max (`n` runs per person)."""

    kind: str
    window_ms: int = 0
    n: int = 0

    @property
    def text(self) -> str:
        if self.kind == "once_per":
            return f"once_per:{self.window_ms // 1000}s"
        return f"max:{self.n}" if self.kind == "max" else self.kind


@dataclass(frozen=True)
class Wait:
    id: str
    ms: int


@dataclass(frozen=True)
class WaitUntil:
    id: str
    condition: Condition
    at_most_ms: int
    then: tuple[Step, ...]
    otherwise: tuple[Step, ...]


@dataclass(frozen=True)
class Branch:
    id: str
    condition: Condition
    then: tuple[Step, ...]
    otherwise: tuple[Step, ...]


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    body: Any
    headers: dict[str, str]
    secret: str | None = None


@dataclass(frozen=True)
class SetTraits:
    id: str
    traits: dict[str, Any]


@dataclass(frozen=True)
class Track:
    id: str
    event: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Message:
    id: str
    content: dict[str, Any]


Step = Wait | WaitUntil | Branch | Webhook | SetTraits | Track | Message


@dataclass(frozen=True)
class Definition:
    name: str
    state: str
    trigger: Trigger
    frequency: Frequency
    steps: tuple[Step, ...]
    audience: Condition | None = None
    goal: Condition | None = None
    exit: Condition | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


# reading -----------------------------------------------------------------------------------------
def parse_definition(raw: Any, lines: dict[str, int] | None = None) -> Definition:
    """The definition `raw` (its JSON form) says; `lines` maps paths to YAML lines for errors."""
    try:
        return _definition(raw)
    except DefinitionError as exc:
        if lines is None:
            raise
        raise DefinitionError(exc.reason, at=exc.at, line=_line_of(lines, exc.at)) from None


def _line_of(lines: dict[str, int], at: str) -> int | None:
    path = at
    while path:
        if path in lines:
            return lines[path]
        path = path.rsplit("/", 1)[0]
    return lines.get("")


def _definition(raw: Any) -> Definition:
    if not isinstance(raw, dict):
        raise DefinitionError("an automation is an object", at="/")
    if unknown := sorted(set(raw) - _KEYS):
        raise DefinitionError(f"unknown field {unknown[0]!r}", at=f"/{unknown[0]}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise DefinitionError("name is a string of 1 to 200 characters", at="/name")
    state = raw.get("state", "draft")
    if state not in STATES:
        raise DefinitionError(f"state is one of {', '.join(STATES)}", at="/state")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise DefinitionError("steps is a non-empty list", at="/steps")
    counter = [0]
    return Definition(
        name=name.strip(),
        state=state,
        trigger=_trigger(raw.get("trigger")),
        frequency=_frequency(raw.get("frequency", "every_time")),
        steps=_steps(steps, "", counter),
        audience=_condition(raw.get("audience"), "/audience"),
        goal=_condition(raw.get("goal"), "/goal"),
        exit=_condition(raw.get("exit"), "/exit"),
        raw=raw,
    )


def _trigger(raw: Any) -> Trigger:
    at = "/trigger"
    if not isinstance(raw, dict):
        raise DefinitionError(
            'trigger is {"event": ...}, {"segment": ...} or {"trait": ...}', at=at
        )
    kinds = [k for k in ("event", "segment", "trait") if k in raw]
    if len(kinds) != 1:
        raise DefinitionError("a trigger has exactly one of event, segment or trait", at=at)
    kind = kinds[0]
    allowed = {"event": {"event", "where"}, "segment": {"segment", "on"},
               "trait": {"trait", "from", "to"}}[kind]  # fmt: skip
    if unknown := sorted(set(raw) - allowed):
        raise DefinitionError(f"unknown field {unknown[0]!r} for a {kind} trigger", at=at)
    name = raw[kind]
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError(f"{kind} is a non-empty name", at=f"{at}/{kind}")
    if kind == "event":
        return Trigger("event", name, where=_where(raw.get("where"), f"{at}/where"))
    if kind == "segment":
        on = raw.get("on", "enter")
        if on not in ("enter", "exit"):
            raise DefinitionError("on is enter or exit", at=f"{at}/on")
        return Trigger("segment", name, on=on)
    return Trigger("trait", name, from_value=raw.get("from", _NOTHING),
                   to_value=raw.get("to", _NOTHING))  # fmt: skip


def _frequency(raw: Any) -> Frequency:
    at = "/frequency"
    if raw in ("every_time", "once"):
        return Frequency(raw)
    if isinstance(raw, str) and raw.startswith("once_per:"):
        return Frequency("once_per", window_ms=_duration(raw[9:], at))
    n = parse_int(raw[4:]) if isinstance(raw, str) and raw.startswith("max:") else None
    if n is not None and 1 <= n <= 1_000_000:
        return Frequency("max", n=n)
    raise DefinitionError("frequency is every_time, once, once_per:DURATION or max:N", at=at)


def duration_ms(text: str) -> int:
    """`10m`, `1h30m`, `7d`, `2w`, `45s` in milliseconds (ValueError otherwise)."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(a + u for a, u in parts) != re.sub(r"\s+", "", compact):
        raise ValueError(f"not a duration: {text!r}")
    total = sum(int(amount) * _UNITS[unit] for amount, unit in parts)
    if not 0 < total <= 366 * 86_400_000:
        raise ValueError("a duration is more than 0 and at most a year")
    return total


def _duration(raw: Any, at: str) -> int:
    if isinstance(raw, str):
        try:
            return duration_ms(raw)
        except ValueError:
            pass
    raise DefinitionError('a duration such as "30s", "10m", "1h30m", "7d" (at most a year)', at=at)


def _condition(raw: Any, at: str) -> Condition | None:
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            from cairn.finder.text import parse

            return parse(raw)
        return from_json(raw)
    except ConditionError as exc:
        raise DefinitionError(f"invalid condition: {exc.message}", at=at) from None


def _where(raw: Any, at: str) -> Condition | None:
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            return _where_text(raw)
        return where_from_json(raw)
    except ConditionError as exc:
        raise DefinitionError(f"invalid where: {exc.message}", at=at) from None


def _where_text(text: str) -> Condition:
    """The text form of an event's property tests (`total > 100 and currency = "EUR"`)."""
    from cairn.finder.text import _Parser  # the finder reads `where` text only inside `did`

    parser = _Parser(text)
    if parser.peek().kind == "end":
        parser.fail("a test of the event's properties (such as total > 100)")
    node = parser.any_of(True)
    if parser.peek().kind != "end":
        parser.fail("and, or or the end of the condition")
    parser.check_depth(node, 0)
    return where_from_json(node)


# steps -------------------------------------------------------------------------------------------
def _steps(raw: Any, prefix: str, counter: list[int]) -> tuple[Step, ...]:
    at = prefix or "/steps"
    if not isinstance(raw, list):
        raise DefinitionError("a list of steps", at=_pointer(at))
    out = []
    for index, item in enumerate(raw):
        counter[0] += 1
        if counter[0] > MAX_STEPS:
            raise DefinitionError(f"an automation has at most {MAX_STEPS} steps", at=_pointer(at))
        sid = f"{prefix}/{index}".lstrip("/") if prefix else str(index)
        out.append(_step(item, sid, counter))
    return tuple(out)


def _pointer(step_id: str) -> str:
    return "/steps/" + step_id if step_id and not step_id.startswith("/") else step_id


def _step(raw: Any, sid: str, counter: list[int]) -> Step:
    at = _pointer(sid)
    kinds = ("wait", "wait_until", "branch", "webhook", "set_traits", "track", "message")
    found = [k for k in kinds if isinstance(raw, dict) and k in raw]
    if len(found) != 1:
        raise DefinitionError(f"a step has exactly one of {', '.join(kinds)}", at=at)
    kind = found[0]
    allowed = {"wait_until": {"wait_until", "at_most", "then", "else"},
               "branch": {"branch", "then", "else"}}.get(kind, {kind})  # fmt: skip
    if unknown := sorted(set(raw) - allowed):
        raise DefinitionError(f"unknown field {unknown[0]!r} for a {kind} step", at=at)
    value = raw[kind]
    if kind == "wait":
        return Wait(sid, _duration(value, f"{at}/wait"))
    if kind in ("wait_until", "branch"):
        condition = _condition(value, f"{at}/{kind}")
        if condition is None:
            raise DefinitionError("a condition", at=f"{at}/{kind}")
        then = _steps(raw.get("then", []), f"{sid}/then", counter)
        otherwise = _steps(raw.get("else", []), f"{sid}/else", counter)
        if kind == "branch":
            return Branch(sid, condition, then, otherwise)
        if "at_most" not in raw:
            raise DefinitionError("wait_until needs at_most (a time limit)", at=at)
        return WaitUntil(sid, condition, _duration(raw["at_most"], f"{at}/at_most"), then,
                         otherwise)  # fmt: skip
    return _action(kind, value, sid, at)


def _action(kind: str, value: Any, sid: str, at: str) -> Step:
    at = f"{at}/{kind}"
    if not isinstance(value, dict):
        raise DefinitionError(f"{kind} takes an object", at=at)
    if kind == "webhook":
        return _webhook(value, sid, at)
    if kind == "set_traits":
        if not value:
            raise DefinitionError("set_traits takes at least one trait", at=at)
        return SetTraits(sid, value)
    if kind == "track":
        if unknown := sorted(set(value) - {"event", "properties"}):
            raise DefinitionError(f"unknown field {unknown[0]!r}", at=f"{at}/{unknown[0]}")
        event = value.get("event")
        if not isinstance(event, str) or not event.strip():
            raise DefinitionError("event is a non-empty name", at=f"{at}/event")
        properties = value.get("properties", {})
        if not isinstance(properties, dict):
            raise DefinitionError("properties is an object", at=f"{at}/properties")
        return Track(sid, event, properties)
    if not value:
        raise DefinitionError("a message has content (title, body, ...)", at=at)
    return Message(sid, value)


def _webhook(value: dict[str, Any], sid: str, at: str) -> Webhook:
    if unknown := sorted(set(value) - {"url", "body", "headers", "secret"}):
        raise DefinitionError(f"unknown field {unknown[0]!r}", at=f"{at}/{unknown[0]}")
    url = value.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise DefinitionError("url is an http:// or https:// URL", at=f"{at}/url")
    headers = value.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise DefinitionError("headers maps names to strings", at=f"{at}/headers")
    secret = value.get("secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise DefinitionError("secret is a string of at least 16 characters", at=f"{at}/secret")
    from cairn.automations.templates import check_template

    problem = check_template(value.get("body"))
    if problem is not None:
        raise DefinitionError(f"invalid template: {problem[1]}", at=f"{at}/body{problem[0]}")
    return Webhook(sid, url, value.get("body"), headers, secret)  # type: ignore[arg-type]


# walking -----------------------------------------------------------------------------------------
def step_at(steps: tuple[Step, ...], sid: str) -> Step:
    """The step at path `sid` ("2/then/0")."""
    parts = sid.split("/")
    current: tuple[Step, ...] = steps
    step: Step | None = None
    for i in range(0, len(parts), 2):
        step = current[int(parts[i])]
        if i + 1 < len(parts):
            assert isinstance(step, WaitUntil | Branch)
            current = step.then if parts[i + 1] == "then" else step.otherwise
    assert step is not None
    return step


def first_of(branch: tuple[Step, ...]) -> str | None:
    return branch[0].id if branch else None


def next_step(steps: tuple[Step, ...], sid: str) -> str | None:
    """The path of the step after `sid` once it (and any branch it chose) is done: the next
    sibling, else the step after the enclosing one; None at the end."""
    parts = sid.split("/")
    while parts:
        index = int(parts[-1])
        parent = parts[:-2]
        siblings = steps
        if parent:
            holder = step_at(steps, "/".join(parent))
            assert isinstance(holder, WaitUntil | Branch)
            siblings = holder.then if parts[-2] == "then" else holder.otherwise
        if index + 1 < len(siblings):
            return "/".join([*parts[:-1], str(index + 1)])
        parts = parent
    return None
