"""Webhook bodies from templates: every string in the body is a Jinja2 template rendered in a
sandbox over `event`, `person`, `account`, `automation` and `run`.

A string that is exactly one expression (`"{{ event.properties.total }}"`) keeps the value's type
(a number stays a number, an object stays an object); any other string renders to a string. A
missing value renders as null (or an empty string inside a longer string), never as an error.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import ChainableUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["check_template", "render"]


class _Environment(ImmutableSandboxedEnvironment):
    """Dots read keys before attributes: `event.properties.items` is the property, not a method."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_ENV = _Environment(undefined=ChainableUndefined, autoescape=False)
_ONE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}$", re.DOTALL)
_MAX_DEPTH = 32


def check_template(body: Any, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """(path, problem) for the first string of `body` that is not a valid template, else None."""
    if depth > _MAX_DEPTH:
        return path, f"nested more than {_MAX_DEPTH} levels"
    if isinstance(body, str):
        try:
            _compile(body)
        except TemplateError as exc:
            return path, str(exc)
        return None
    items: list[tuple[str, Any]] = []
    if isinstance(body, dict):
        items = [(f"{path}/{k}", v) for k, v in body.items()]
    elif isinstance(body, list):
        items = [(f"{path}/{i}", v) for i, v in enumerate(body)]
    for at, value in items:
        if found := check_template(value, at, depth + 1):
            return found
    return None


def _compile(text: str) -> Any:
    match = _ONE_EXPRESSION.match(text.strip())
    if match:
        return _ENV.compile_expression(match.group("expr"), undefined_to_none=True)
    return _ENV.from_string(text)


def render(body: Any, context: dict[str, Any]) -> Any:
    """`body` with every string rendered over `context`."""
    if isinstance(body, str):
        if "{{" not in body and "{%" not in body:
            return body
        compiled = _compile(body)
        if hasattr(compiled, "render"):
            return compiled.render(context)
        return _plain(compiled(**context))
    if isinstance(body, dict):
        return {key: render(value, context) for key, value in body.items()}
    if isinstance(body, list):
        return [render(value, context) for value in body]
    return body


def _plain(value: Any) -> Any:
    """A template's value as JSON can carry it (an undefined part is null)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, ChainableUndefined):
        return None
    return str(value)
