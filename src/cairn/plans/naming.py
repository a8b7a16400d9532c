"""Naming rules: Object-Action event names in Title Case with a past-tense action; snake_case keys.

Every rule has a stable id, a default severity and a message that says how to fix the name. A
`suggestion` is given only when the fixed name is certain and passes every rule itself.
`check_message` runs on every event in the pipeline, so results are cached per name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from cairn.plans import paths
from cairn.plans.words import (
    IRREGULAR_PAST,
    NOT_PAST,
    PARTICLES,
    RESERVED_CAMEL_TRAITS,
    SMALL_WORDS,
    SPEC_EXCEPTIONS,
    past_of,
)

__all__ = [
    "LEVELS",
    "RULES",
    "NamingConfig",
    "Violation",
    "check_event_name",
    "check_message",
    "check_parts",
    "check_property_name",
]

LEVELS = ("error", "warning", "info")

RULES: dict[str, tuple[str, str]] = {
    "event-name-empty": ("error", "A track event has a name."),
    "event-name-format": (
        "error",
        "Event names are words separated by single spaces: no snake_case, camelCase, kebab-case "
        "or punctuation.",
    ),
    "event-name-title-case": (
        "error",
        "Every word of an event name starts with a capital; small words (to, from, with, ...) "
        "may stay lower case.",
    ),
    "event-name-object-action": (
        "error",
        "An event name is an object, then the action: 'Button Clicked', not 'Clicked Button'.",
    ),
    "event-name-past-tense": (
        "error",
        "The action is in the past tense: 'Order Completed', not 'Complete Order'.",
    ),
    "event-name-dynamic": (
        "warning",
        "Event names are fixed; ids, numbers and emails belong in properties.",
    ),
    "property-snake-case": (
        "error",
        "Property and trait names are snake_case; the spec's reserved camelCase traits "
        "(firstName, lastName, createdAt, address.postalCode) are accepted.",
    ),
    "unplanned-event": ("error", "The event is not in the tracking plan."),
    "property-required": ("error", "A property the plan requires is missing."),
    "property-type": ("error", "A value has another type than the plan says."),
    "property-enum": ("error", "A value is not one of the values the plan allows."),
    "property-pattern": ("error", "A string does not match the plan's pattern."),
    "property-format": ("error", "A string is not in the plan's format (date-time, email, ...)."),
    "property-range": ("error", "A number is below the plan's minimum or above its maximum."),
    "property-length": ("error", "A string or array is shorter or longer than the plan allows."),
    "property-unplanned": (
        "error",
        "A property the plan does not list, on an event whose additional properties are off.",
    ),
}

_CONVENTION = "Object-Action in Title Case with a past-tense action, like 'Order Completed'"


@dataclass(frozen=True)
class Violation:
    """One broken rule. `path` is "" for the event name, else e.g. `properties.order_id`."""

    rule: str
    severity: str
    message: str
    path: str = ""
    suggestion: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "suggestion": self.suggestion,
        }


@dataclass(frozen=True)
class NamingConfig:
    """Per-workspace settings: names always accepted, extra past-tense verbs, severity overrides.

    `severity` maps a rule id of `RULES` to "error", "warning", "info" or "off" (rule disabled).
    """

    exceptions: frozenset[str] = frozenset()
    extra_verbs: frozenset[str] = frozenset()
    severity: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule, level in self.severity.items():
            if rule not in RULES:
                raise ValueError(f"unknown rule {rule!r}")
            if level not in (*LEVELS, "off"):
                raise ValueError(f"severity of {rule} must be error, warning, info or off")
        object.__setattr__(self, "exceptions", frozenset(self.exceptions))
        object.__setattr__(self, "extra_verbs", frozenset(v.lower() for v in self.extra_verbs))
        object.__setattr__(self, "severity", MappingProxyType(dict(self.severity)))
        key = (self.exceptions, self.extra_verbs, frozenset(self.severity.items()))
        object.__setattr__(self, "_hash", hash(key))
        # Results by name, per configuration: a plain dict lookup is several times cheaper than
        # functools.lru_cache with this object in its key, and this runs for every key of every
        # event. Each memo is emptied when it reaches _MEMO_SIZE names. The fourth holds whole
        # results by a message's shape (`check_parts`).
        object.__setattr__(self, "_memo", ({}, {}, {}, {}))

    def __hash__(self) -> int:
        return int(self.__dict__["_hash"])

    def _memos(self) -> tuple[_Memo, _Memo, _Memo, _ShapeMemo]:
        """The memos of event names, property names, trait names and message shapes."""
        memos: tuple[_Memo, _Memo, _Memo, _ShapeMemo] = self.__dict__["_memo"]
        return memos

    def level(self, rule: str) -> str:
        """The severity of `rule` under this configuration ("off" when disabled)."""
        return self.severity.get(rule) or RULES[rule][0]


_DEFAULT = NamingConfig()
_Memo = dict[str, tuple[Violation, ...]]
_ShapeMemo = dict[tuple[Any, ...], tuple[Violation, ...]]
_MEMO_SIZE = 10_000


def _remember(
    memo: dict[Any, Any], name: Any, found: tuple[Violation, ...]
) -> tuple[Violation, ...]:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[name] = found
    return found


def violation(
    rule: str, message: str, config: NamingConfig, *, path: str = "", suggestion: str | None = None
) -> Violation | None:
    """A violation of `rule` at its configured severity, or None when the rule is off."""
    level = config.level(rule)
    if level == "off":
        return None
    return Violation(rule, level, message, path, suggestion)


def check_event_name(name: str, config: NamingConfig = _DEFAULT) -> list[Violation]:
    """The naming rules that the track event name `name` breaks."""
    return list(_event_name(name, config))


def check_property_name(
    name: str, config: NamingConfig = _DEFAULT, *, reserved: bool = False
) -> list[Violation]:
    """The naming rules a property or trait name breaks; `reserved` accepts firstName & co."""
    return list(_property_name(name, config, reserved))


def check_message(message: Mapping[str, Any], config: NamingConfig = _DEFAULT) -> list[Violation]:
    """The naming rules a whole Segment message breaks: its event name and every key inside
    `properties` (track, page, screen) or `traits` (identify, group), at any depth."""
    return list(
        check_parts(
            message.get("type"),
            "event" in message,
            message.get("event"),
            message.get("properties"),
            message.get("traits"),
            config,
        )
    )


def check_parts(
    kind: Any,
    has_event: bool,
    event: Any,
    properties: Any,
    traits: Any,
    config: NamingConfig = _DEFAULT,
) -> tuple[Violation, ...]:
    """`check_message` of a message given by the parts it reads (the pipeline decodes only
    those): its type, whether it has an event key, the event, its properties and traits."""
    if kind == "track" or (kind is None and has_event):
        name = event if isinstance(event, str) else None
        return _section(name, properties, "properties", False, config)
    if kind in ("page", "screen"):
        return _section(None, properties, "properties", False, config)
    if kind in ("identify", "group"):
        return _section(None, traits, "traits", True, config)
    return ()


_FLAT_KEYS = 64  # objects of up to this many keys are remembered by their keys


def _section(
    event: str | None, value: Any, path: str, reserved: bool, config: NamingConfig
) -> tuple[Violation, ...]:
    """The event name's violations, then those of the keys in `value` (at `path`). The result
    for an object holding no objects or arrays depends on its keys alone: it is remembered by
    (event, which section, keys), so most events cost a tuple of their keys and a lookup."""
    shape: tuple[Any, ...] | None = None
    if type(value) is dict and len(value) <= _FLAT_KEYS:
        for inner in value.values():
            if type(inner) is dict or type(inner) is list:
                break
        else:
            shape = (event, reserved, *value)
            known = config._memos()[3].get(shape)
            if known is not None:
                return known
    found: list[Violation] = []
    if event is not None:
        found.extend(_event_name(event, config))
    _check_keys(value, path, config, reserved, found)
    if shape is None:
        return tuple(found)
    return _remember(config._memos()[3], shape, tuple(found))


_MAX_DEPTH = 16


def _check_keys(
    value: Any, path: str, config: NamingConfig, reserved: bool, found: list[Violation]
) -> None:
    if type(value) is dict or type(value) is list:
        memo = _names_memo(config, reserved)
        _check_nested(value, path, memo, config, reserved, found, 0)


def _check_nested(
    value: dict[Any, Any] | list[Any],
    path: str,
    memo: _Memo,
    config: NamingConfig,
    reserved: bool,
    found: list[Violation],
    depth: int,
) -> None:
    """The keys of an object or of the objects in an array, and everything nested in them."""
    is_object = type(value) is dict
    for key, inner in value.items() if isinstance(value, dict) else enumerate(value):
        if is_object:
            if not isinstance(key, str):
                continue
            broken = memo.get(key)
            if broken is None:
                broken = _property_name(key, config, reserved)
            if broken:
                found.extend(replace(v, path=paths.child(path, key)) for v in broken)
        kind = type(inner)
        if (kind is dict or kind is list) and depth < _MAX_DEPTH:
            at = paths.child(path, key) if isinstance(key, str) else paths.item(path, key)
            _check_nested(inner, at, memo, config, reserved, found, depth + 1)


# ---------------------------------------------------------------------------------------------
# Event names


_MIXED = "written with mixed separators"
_SEPARATOR_STYLES = {"_": "snake_case", "-": "kebab-case", ".": "dotted", ":": "colon-separated"}
_SEPARATORS = re.compile(r"[\s_\-.:/]+")
_CAMEL_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_HUMP = re.compile(r"[a-z0-9][A-Z]")
_DYNAMIC = re.compile(r"\d{4,}|(?=.*\d)[0-9a-fA-F]{8,}")


def _event_name(name: str, config: NamingConfig) -> tuple[Violation, ...]:
    memo = config._memos()[0]
    found = memo.get(name)
    if found is None:
        found = _remember(memo, name, _event_violations(name, config))
    return found


def _event_violations(name: str, config: NamingConfig) -> tuple[Violation, ...]:
    if name in config.exceptions or name in SPEC_EXCEPTIONS:
        return ()
    problems = _event_problems(name, config)
    if not problems:
        return ()
    suggestion = _event_fix(name, config)
    if suggestion is not None and not _accepted(suggestion, config):
        suggestion = None
    found = (violation(rule, message, config, suggestion=suggestion) for rule, message in problems)
    return tuple(v for v in found if v is not None)


def _accepted(name: str, config: NamingConfig) -> bool:
    exempt = name in config.exceptions or name in SPEC_EXCEPTIONS
    return exempt or not _event_problems(name, config)


def _event_problems(name: str, config: NamingConfig) -> list[tuple[str, str]]:
    if not name.strip():
        return [("event-name-empty", "The event name is empty: " + _CONVENTION + ".")]
    words, style = _event_words(name)
    problems: list[tuple[str, str]] = []
    if style is not None:
        problems.append(("event-name-format", _format_message(name, style, words)))
        if not words:
            return problems  # "!!!" or "___": no words to judge
    elif not _title_cased(words):
        fixed = " ".join(_title_case(words))
        problems.append(
            ("event-name-title-case", f"'{name}' is not in Title Case: write '{fixed}'.")
        )
    structure = _structure_problem(name, words, config)
    if structure is not None:
        problems.append(structure)
    if any(_DYNAMIC.fullmatch(word) for word in words) or "@" in name:
        problems.append(
            (
                "event-name-dynamic",
                f"'{name}' seems to hold a value (an id, a number or an email): keep the name "
                "fixed and send the value as a property.",
            )
        )
    return problems


def _event_words(name: str) -> tuple[list[str], str | None]:
    """The words of a name, and what is wrong with how they are written (None: nothing)."""
    if re.search(r"[^\w\s\-.:/]", name):
        return [w for w in re.split(r"[\W_]+", name) if w], "punctuation"
    separators = {ch for ch in name if ch in _SEPARATOR_STYLES or ch == "/"}
    if separators:
        pieces = [p for p in _SEPARATORS.split(name) if p]
        words = [w for piece in pieces for w in _split_humps(piece)]
        if len(separators) > 1:
            return words, _MIXED
        return words, _SEPARATOR_STYLES.get(separators.pop(), "slash-separated")
    if " " not in name.strip() and _HUMP.search(name):
        return _split_humps(name.strip()), "PascalCase" if name[:1].isupper() else "camelCase"
    words = name.split()
    if " ".join(words) != name:
        return words, "extra spaces"
    return words, None


def _split_humps(piece: str) -> list[str]:
    return _CAMEL_PART.findall(piece) if _HUMP.search(piece) else [piece]


def _format_message(name: str, style: str, words: list[str]) -> str:
    if style == "punctuation":
        return f"'{name}' has punctuation: use letters, digits and single spaces; {_CONVENTION}."
    if style == "extra spaces":
        return f"'{name}' has extra spaces: separate words by single spaces."
    spaced = " ".join(_title_case(words))
    return f"'{name}' is {style}: event names are words separated by spaces, like '{spaced}'."


def _title_cased(words: list[str]) -> bool:
    letters = [w for w in words if sum(c.isalpha() for c in w) > 1]
    if len(letters) > 1 and all(w.isupper() for w in letters):
        return False
    return all(_word_cased(word, index) for index, word in enumerate(words))


def _word_cased(word: str, index: int) -> bool:
    if word[:1].isupper() or word[:1].isdigit():
        return True
    if index > 0 and word in SMALL_WORDS:
        return True
    return any(c.isupper() for c in word[1:])  # deliberate casing: "iPhone", "eBay"


def _title_case(words: list[str]) -> list[str]:
    letters = [w for w in words if sum(c.isalpha() for c in w) > 1]
    shouting = len(letters) > 1 and all(w.isupper() for w in letters)
    cased = []
    for index, word in enumerate(words):
        word = word.lower() if shouting else word
        last = index == len(words) - 1
        if word.lower() in SMALL_WORDS and index > 0 and not last:
            cased.append(word.lower())
        else:
            cased.append(word[:1].upper() + word[1:])
    return cased


def _is_past(word: str, config: NamingConfig) -> bool:
    lower = word.lower()
    if lower in IRREGULAR_PAST or lower in config.extra_verbs:
        return True
    return len(lower) > 3 and lower.endswith("ed") and lower not in NOT_PAST


def _structure_problem(name: str, words: list[str], config: NamingConfig) -> tuple[str, str] | None:
    past = [index for index, word in enumerate(words) if _is_past(word, config)]
    if len(words) == 1:
        return (
            "event-name-object-action",
            f"'{name}' is one word: event names are {_CONVENTION}.",
        )
    if any(index > 0 for index in past):
        return None
    if past:
        return "event-name-object-action", _verb_first_message(name, words)
    return "event-name-past-tense", _past_tense_message(name, words)


def _verb_first_message(name: str, words: list[str]) -> str:
    reordered = _verb_last(words, words[0])
    if reordered is None:
        return (
            f"The action '{words[0]}' comes first in '{name}' and there is no object: say what "
            f"was acted on, like 'User Signed Up'; {_CONVENTION}."
        )
    fixed = " ".join(_title_case(reordered))
    return f"The action '{words[0]}' comes first in '{name}': put the object first, '{fixed}'."


def _past_tense_message(name: str, words: list[str]) -> str:
    for word in (words[-1], words[0]):
        past = past_of(word)
        if past is not None:
            return (
                f"'{word}' in '{name}' is not in the past tense: write '{past.capitalize()}' "
                f"after the object; {_CONVENTION}."
            )
    return f"'{name}' has no action in the past tense: {_CONVENTION}."


def _verb_last(words: list[str], verb: str) -> list[str] | None:
    """`Verb Object [to Place]` → `Object Verb [to Place]`, or None when there is no object."""
    rest = words[1:]
    size = 0
    while size < len(rest) and rest[size].lower() not in SMALL_WORDS | PARTICLES:
        size += 1
    if size == 0:
        return None
    return [*rest[:size], verb, *rest[size:]]


def _event_fix(name: str, config: NamingConfig) -> str | None:
    words, style = _event_words(name)
    if style in ("punctuation", _MIXED) or not words:
        return None  # which words were meant is a guess ("shop:product_added")
    words = _title_case(words)
    past = [index for index, word in enumerate(words) if _is_past(word, config)]
    if len(words) > 1 and past == [0]:
        reordered = _verb_last(words, words[0])
        words = _title_case(reordered) if reordered else words
    elif len(words) > 1 and not past:
        words = _past_fix(words) or words
    return " ".join(words)


def _past_fix(words: list[str]) -> list[str] | None:
    last = past_of(words[-1])
    if last is not None and not any(w.lower() in SMALL_WORDS for w in words[:-1]):
        return [*words[:-1], last.capitalize()]
    first = past_of(words[0])
    if first is not None:
        reordered = _verb_last(words, first.capitalize())
        return _title_case(reordered) if reordered else None
    return None


# ---------------------------------------------------------------------------------------------
# Property and trait names


_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def _names_memo(config: NamingConfig, reserved: bool) -> _Memo:
    memos = config._memos()
    return memos[2] if reserved else memos[1]


def _property_name(name: str, config: NamingConfig, reserved: bool) -> tuple[Violation, ...]:
    memo = _names_memo(config, reserved)
    found = memo.get(name)
    if found is None:
        found = _remember(memo, name, _property_violations(name, config, reserved))
    return found


def _property_violations(name: str, config: NamingConfig, reserved: bool) -> tuple[Violation, ...]:
    if _SNAKE.fullmatch(name) or name in config.exceptions:
        return ()
    if reserved and name in RESERVED_CAMEL_TRAITS:
        return ()
    fix = _snake_case(name)
    how = f"write '{fix}'" if fix else "use lower-case letters, digits and single underscores"
    message = f"'{name}' {_key_style(name)}: property names are snake_case; {how}."
    found = violation("property-snake-case", message, config, suggestion=fix)
    return () if found is None else (found,)


def _key_style(name: str) -> str:
    """How `name` breaks snake_case, as a phrase: "'orderId' is camelCase"."""
    if not name:
        return "is empty"
    if not re.fullmatch(r"[A-Za-z0-9_\- .]+", name):
        return "has characters other than a-z, digits and underscores"
    for mark, phrase in ((" ", "has spaces"), ("-", "is kebab-case"), (".", "is dotted")):
        if mark in name:
            return phrase
    if _HUMP.search(name):
        return "is PascalCase" if name[0].isupper() else "is camelCase"
    if any(c.isupper() for c in name):
        return "has upper-case letters"
    if name[0].isdigit():
        return "starts with a digit"
    return "has stray underscores"


def _snake_case(name: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\- .]*[A-Za-z0-9]|[A-Za-z]", name):
        return None
    pieces = [p for p in re.split(r"[_\- .]+", name) if p]
    fixed = "_".join(w.lower() for piece in pieces for w in _split_humps(piece))
    return fixed if _SNAKE.fullmatch(fixed) else None
