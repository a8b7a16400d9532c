"""Tracking calls in Python source, read with `ast`.

Calls on an SDK-looking object (`analytics.track`, `self.analytics.identify`, `cairn_analytics.page`,
a `Client(...)` made from an SDK module) and bare `track(...)` imported from an SDK module or given
`event=`. Arguments follow analytics-python and Cairn's Python SDK: `track(user_id, event,
properties)`, `identify(user_id, traits)`, `group(user_id, group_id, traits)`,
`page(user_id, category, name, properties)`; the browser order `track("Event", {...})` is read too.
"""

from __future__ import annotations

import ast
from typing import Any

from cairn.plans import paths
from cairn.plans.schema import UNKNOWN
from cairn.plans.sources import KINDS, PAYLOAD_KEY, Call, Position, is_sdk_module, is_sdk_receiver

__all__ = ["scan_python"]

# Where each argument sits in analytics-python's signatures.
_EVENT_AT = 1
_PAYLOAD_AT = {"track": 2, "identify": 1, "group": 2, "page": 3, "screen": 3}


def scan_python(text: str, filename: str = "<source>") -> list[Call]:
    """The tracking calls in Python `text`. Raises SyntaxError when it does not parse."""
    tree = ast.parse(text, filename)
    lines = text.splitlines()
    names, functions = _sdk_names(tree)
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            kind = _kind(node, names, functions)
            if kind is not None:
                calls.append(_Reader(lines).call(kind, node))
    return sorted(calls, key=lambda c: c.position)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _sdk_names(tree: ast.Module) -> tuple[set[str], dict[str, str]]:
    """Names bound to SDK modules and clients made by SDK constructors; names of functions
    imported from SDK modules, with the name they have there (`track as send`)."""
    names: set[str] = set()
    functions: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(
                alias.asname or alias.name.split(".")[0]
                for alias in node.names
                if is_sdk_module(alias.name)
            )
        elif isinstance(node, ast.ImportFrom) and is_sdk_module(node.module or ""):
            names.update(alias.asname or alias.name for alias in node.names)
            functions.update((alias.asname or alias.name, alias.name) for alias in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            maker = _dotted(node.value.func) or ""
            if maker.split(".")[0] in names or is_sdk_receiver(maker):
                names.update(d for d in map(_dotted, node.targets) if d is not None)
    return names, functions


def _kind(node: ast.Call, names: set[str], functions: dict[str, str]) -> str | None:
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in KINDS:
        receiver = _dotted(func.value)
        if receiver is not None and (receiver in names or is_sdk_receiver(receiver)):
            return func.attr
    if isinstance(func, ast.Name):
        imported = functions.get(func.id)
        if imported in KINDS:
            return imported
        if func.id == "track" and any(k.arg == "event" for k in node.keywords):
            return "track"
    return None


class _Reader:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def position(self, node: ast.AST) -> Position:
        line = getattr(node, "lineno", 1)
        offset = getattr(node, "col_offset", 0)  # in UTF-8 bytes
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return line, len(text.encode()[:offset].decode("utf-8", "replace")) + 1

    def call(self, kind: str, node: ast.Call) -> Call:
        call = Call(kind, self.position(node))
        event, payload = self._arguments(kind, node)
        if isinstance(event, ast.Constant) and isinstance(event.value, str):
            call.event, call.event_position = event.value, self.position(event)
        elif isinstance(event, ast.JoinedStr):
            call.dynamic_event, call.event_position = True, self.position(event)
        if payload is not None:
            value = self.literal(payload, PAYLOAD_KEY[kind], call)
            if isinstance(value, dict):
                call.payload = value
            else:
                call.complete = False  # a variable: the source does not say what it holds
        return call

    def _arguments(self, kind: str, node: ast.Call) -> tuple[ast.expr | None, ast.expr | None]:
        args = [a for a in node.args if not isinstance(a, ast.Starred)]
        keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
        payload_name = PAYLOAD_KEY[kind]
        if kind == "track" and "event" not in keywords and _browser_order(args):
            return args[0], args[1] if len(args) > 1 else keywords.get(payload_name)
        event = keywords.get("event") or (args[_EVENT_AT] if len(args) > _EVENT_AT else None)
        at = _PAYLOAD_AT[kind]
        payload = keywords.get(payload_name) or (args[at] if len(args) > at else None)
        return (event if kind == "track" else None), payload

    def literal(self, node: ast.expr, path: str, call: Call) -> Any:
        """The value of a literal expression; UNKNOWN for anything computed."""
        call.positions.setdefault(path, self.position(node))
        if isinstance(node, ast.Constant) and not isinstance(node.value, bytes):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.literal(node.operand, path, call)
            return -inner if isinstance(inner, int | float) else UNKNOWN
        if isinstance(node, ast.Dict):
            return self._dict(node, path, call)
        if isinstance(node, ast.List | ast.Tuple):
            return [self.literal(e, paths.item(path, i), call) for i, e in enumerate(node.elts)]
        if isinstance(node, ast.Call) and _dotted(node.func) == "dict" and not node.args:
            return self._keywords(node, path, call)
        return UNKNOWN

    def _dict(self, node: ast.Dict, path: str, call: Call) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                call.complete = False  # **spread or a computed key
                continue
            at = paths.child(path, key.value)
            call.positions[at] = self.position(key)
            found[key.value] = self.literal(value, at, call)
        return found

    def _keywords(self, node: ast.Call, path: str, call: Call) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                call.complete = False
                continue
            at = paths.child(path, keyword.arg)
            call.positions[at] = self.position(keyword)
            found[keyword.arg] = self.literal(keyword.value, at, call)
        return found


def _browser_order(args: list[ast.expr]) -> bool:
    """`track("Order Completed", {...})`: the first argument is the event, not a user id."""
    if not args or not (isinstance(args[0], ast.Constant | ast.JoinedStr)):
        return False
    return len(args) == 1 or isinstance(args[1], ast.Dict)
