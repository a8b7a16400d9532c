"""Tracking calls in JavaScript and TypeScript source, read with a small tokenizer.

Calls on an SDK-looking object (`analytics.track`, `window.analytics?.identify`, `cairn.page`,
`rudderanalytics.group`, `this.segment.track`) and bare calls of names imported from an SDK module.
Arguments follow analytics.js and cairn.js (`track(event, properties)`, `identify([userId],
[traits])`, `page([category], [name], [properties])`, `group(groupId, [traits])`) and
analytics-node's object form (`track({userId, event, properties})`). Object and array literals
are read; anything computed is left unknown. TypeScript `as T` / `satisfies T` casts are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cairn.plans import paths
from cairn.plans.schema import UNKNOWN
from cairn.plans.sources import KINDS, PAYLOAD_KEY, Call, Position, is_sdk_module, is_sdk_receiver

__all__ = ["Token", "scan_script", "tokenize"]


@dataclass(frozen=True)
class Token:
    kind: str  # name, string, template, number, regex, punct
    text: str  # the source text; for strings and plain templates, the value
    line: int
    column: int
    dynamic: bool = False  # a template with ${...}

    @property
    def position(self) -> Position:
        return self.line, self.column


_NAME = re.compile(r"[A-Za-z_$\u00c0-\uffff#][\w$\u00c0-\uffff]*")
_NUMBER = re.compile(
    r"(?:0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)n?"
)
_PUNCT3 = ("...", "===", "!==", "**=", "<<=", ">>=", "&&=", "||=", "??=")
_PUNCT2 = ("?.", "=>", "==", "!=", "<=", ">=", "&&", "||", "??", "++", "--", "+=", "-=", "*=", "/=")
_BEFORE_REGEX_WORDS = {
    "return",
    "typeof",
    "instanceof",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "yield",
    "await",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


class _Tokenizer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []

    def run(self, until_brace: bool = False) -> None:
        """Tokenize to the end, or to the `}` closing a template's `${`."""
        depth = 0
        while self.at < len(self.text):
            char = self.text[self.at]
            if char == "}" and until_brace and depth == 0:
                self.at += 1
                return
            if char in "{}" and until_brace:
                depth += 1 if char == "{" else -1
            self.step(char)

    def step(self, char: str) -> None:
        text = self.text
        if char in " \t\r\n\ufeff\u00a0\u2028\u2029":
            self.space(char)
        elif text.startswith("//", self.at) or (self.at == 0 and text.startswith("#!")):
            end = text.find("\n", self.at)
            self.at = len(text) if end < 0 else end
        elif text.startswith("/*", self.at):
            end = text.find("*/", self.at + 2)
            self.skip_to(len(text) if end < 0 else end + 2)
        elif char in "'\"":
            self.string(char)
        elif char == "`":
            self.template()
        elif char.isdigit() or (char == "." and text[self.at + 1 : self.at + 2].isdigit()):
            self.match(_NUMBER, "number")
        elif _NAME.match(text, self.at):
            self.match(_NAME, "name")
        elif char == "/" and self.regex_allowed():
            self.regex()
        else:
            self.punct()

    def space(self, char: str) -> None:
        if char == "\n":
            self.line += 1
            self.line_start = self.at + 1
        self.at += 1

    def skip_to(self, end: int) -> None:
        newlines = self.text.count("\n", self.at, end)
        if newlines:
            self.line += newlines
            self.line_start = self.text.rindex("\n", self.at, end) + 1
        self.at = end

    def add(self, kind: str, text: str, start: int, dynamic: bool = False) -> None:
        column = start - self.line_start + 1
        self.tokens.append(Token(kind, text, self.line, column, dynamic))

    def match(self, pattern: re.Pattern[str], kind: str) -> None:
        found = pattern.match(self.text, self.at)
        assert found is not None
        self.add(kind, found.group(), self.at)
        self.at = found.end()

    def punct(self) -> None:
        for size, choices in ((3, _PUNCT3), (2, _PUNCT2)):
            if self.text[self.at : self.at + size] in choices:
                self.add("punct", self.text[self.at : self.at + size], self.at)
                self.at += size
                return
        self.add("punct", self.text[self.at], self.at)
        self.at += 1

    def string(self, quote: str) -> None:
        start, at, value = self.at, self.at + 1, []
        text = self.text
        while at < len(text) and text[at] != quote:
            if text[at] == "\n":  # unterminated (an apostrophe in JSX text): not a string
                self.punct()
                return
            if text[at] == "\\" and at + 1 < len(text):
                value.append(_unescape(text, at))
                at += 2 + (4 if text[at + 1] == "u" else 2 if text[at + 1] == "x" else 0)
                continue
            value.append(text[at])
            at += 1
        self.add("string", "".join(value), start)
        self.skip_to(min(at + 1, len(text)))

    def template(self) -> None:
        start, line, line_start = self.at, self.line, self.line_start
        self.at += 1
        value: list[str] = []
        dynamic = False
        while self.at < len(self.text) and self.text[self.at] != "`":
            if self.text.startswith("${", self.at):
                dynamic = True
                self.at += 2
                inner = _Tokenizer(self.text)
                inner.at, inner.line, inner.line_start = self.at, self.line, self.line_start
                inner.run(until_brace=True)
                self.at, self.line, self.line_start = inner.at, inner.line, inner.line_start
            elif self.text[self.at] == "\\":
                value.append(_unescape(self.text, self.at))
                self.skip_to(min(self.at + 2, len(self.text)))
            else:
                value.append(self.text[self.at])
                self.skip_to(self.at + 1)
        self.at += 1
        self.tokens.append(Token("template", "".join(value), line, start - line_start + 1, dynamic))

    def regex_allowed(self) -> bool:
        if not self.tokens:
            return True
        last = self.tokens[-1]
        if last.kind == "punct":
            return last.text not in (")", "]", "}")
        return last.kind == "name" and last.text in _BEFORE_REGEX_WORDS

    def regex(self) -> None:
        at, in_class = self.at + 1, False
        text = self.text
        while at < len(text) and (in_class or text[at] != "/"):
            if text[at] == "\n":  # not a regex after all (JSX `</tag>`): a division sign
                self.punct()
                return
            in_class = (in_class or text[at] == "[") and text[at] != "]"
            at += 2 if text[at] == "\\" else 1
        end = at + 1
        while end < len(text) and text[end].isalpha():
            end += 1
        self.add("regex", text[self.at : end], self.at)
        self.at = end


def _unescape(text: str, at: int) -> str:
    code = text[at + 1 : at + 2]
    if code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[at + 2 : at + 6]):
        return chr(int(text[at + 2 : at + 6], 16))
    if code == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", text[at + 2 : at + 4]):
        return chr(int(text[at + 2 : at + 4], 16))
    return _ESCAPES.get(code, code)


def tokenize(text: str) -> list[Token]:
    """The tokens of JavaScript or TypeScript `text` (comments and whitespace dropped)."""
    tokenizer = _Tokenizer(text)
    tokenizer.run()
    return tokenizer.tokens


# ---------------------------------------------------------------------------------------------
# Reading calls


@dataclass
class _Value:
    """An argument: a literal `value` (UNKNOWN when computed), with the tokens' positions."""

    value: Any
    position: Position
    token: Token | None = None  # for strings and templates
    keys: dict[str, _Value] = field(default_factory=dict)  # for object literals
    key_positions: dict[str, Position] = field(default_factory=dict)
    items: list[_Value] = field(default_factory=list)  # for array literals
    complete: bool = True


_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_DELIMITERS = {",", ")", "]", "}", ";"}


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def is_punct(self, text: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token.kind == "punct" and token.text == text

    def skip_balanced(self) -> None:
        """Skip one bracketed group, starting at its opening bracket."""
        depth = 0
        while (token := self.peek()) is not None:
            self.at += 1
            if token.kind == "punct" and token.text in _CLOSERS:
                depth += 1
            elif token.kind == "punct" and token.text in _CLOSERS.values():
                depth -= 1
                if depth <= 0:
                    return

    def skip_expression(self) -> None:
        """Skip to the `,` or closing bracket that ends the current expression."""
        while (token := self.peek()) is not None:
            if token.kind == "punct" and token.text in _DELIMITERS:
                return
            if token.kind == "punct" and token.text in _CLOSERS:
                self.skip_balanced()
            else:
                self.at += 1

    def arguments(self) -> list[_Value]:
        """The arguments of a call, starting at its `(`."""
        self.at += 1
        found: list[_Value] = []
        while self.peek() is not None and not self.is_punct(")"):
            found.append(self.expression())
            self.next_item(")")
        return found

    def next_item(self, closer: str) -> None:
        """Move past the `,` after an item; always make progress, whatever the source holds."""
        if not self.is_punct(closer) and not self.is_punct(","):
            self.skip_expression()
        if self.is_punct(","):
            self.at += 1
        elif not self.is_punct(closer) and self.peek() is not None:
            self.at += 1  # a stray `;` or bracket in broken source: step over it

    def expression(self) -> _Value:
        value = self.primary()
        token = self.peek()
        if token is None or (token.kind == "punct" and token.text in _DELIMITERS):
            return value
        if (token.kind == "name" and token.text in ("as", "satisfies")) or self.is_punct("!"):
            self.skip_expression()  # a TypeScript cast keeps the value
            return value
        self.skip_expression()
        return _Value(UNKNOWN, value.position)

    def primary(self) -> _Value:
        token = self.peek()
        if token is None:
            return _Value(UNKNOWN, (0, 0))
        if token.kind in ("string", "template"):
            self.at += 1
            literal = UNKNOWN if token.dynamic else token.text
            return _Value(literal, token.position, token)
        if token.kind == "number":
            self.at += 1
            return _Value(_number(token.text), token.position)
        if token.kind == "name" and token.text in ("true", "false", "null", "undefined"):
            self.at += 1
            literal = {"true": True, "false": False, "null": None}.get(token.text, UNKNOWN)
            return _Value(literal, token.position)
        if self.is_punct("-") and (after := self.peek(1)) is not None and after.kind == "number":
            self.at += 2
            number = _number(after.text)
            return _Value(-number if number is not UNKNOWN else UNKNOWN, token.position)
        if self.is_punct("{"):
            return self.object_literal()
        if self.is_punct("["):
            return self.array_literal()
        self.skip_expression()
        return _Value(UNKNOWN, token.position)

    def object_literal(self) -> _Value:
        start = self.peek()
        assert start is not None
        found = _Value({}, start.position)
        self.at += 1
        while (token := self.peek()) is not None and not self.is_punct("}"):
            self.property(found, token)
            self.next_item("}")
        self.at += 1
        found.value = {key: inner.value for key, inner in found.keys.items()}
        return found

    def property(self, found: _Value, token: Token) -> None:
        if self.is_punct("...") or self.is_punct("["):
            found.complete = False  # a spread or a computed key
            self.skip_expression()
            return
        if token.kind not in ("name", "string", "number") or (
            token.kind == "name"
            and token.text in ("get", "set", "async")
            and (after := self.peek(1)) is not None
            and after.kind == "name"
        ):
            self.skip_expression()  # getters, setters, async methods
            return
        self.at += 1
        if self.is_punct(":"):
            self.at += 1
            value = self.expression()
        else:  # shorthand `{ total }` or a method `total() {...}`
            value = _Value(UNKNOWN, token.position)
            self.skip_expression()
        found.keys[token.text] = value
        found.key_positions[token.text] = token.position

    def array_literal(self) -> _Value:
        start = self.peek()
        assert start is not None
        found = _Value([], start.position)
        self.at += 1
        while self.peek() is not None and not self.is_punct("]"):
            if self.is_punct("..."):
                found.complete = False
                self.skip_expression()
            else:
                found.items.append(self.expression())
            self.next_item("]")
        self.at += 1
        found.value = [item.value for item in found.items]
        return found


def _number(text: str) -> Any:
    cleaned = text.replace("_", "").rstrip("n")
    try:
        return int(cleaned, 0) if re.fullmatch(r"0[xXoObB].*|\d+", cleaned) else float(cleaned)
    except ValueError:
        return UNKNOWN


def scan_script(text: str) -> list[Call]:
    """The tracking calls in JavaScript or TypeScript `text`."""
    tokens = tokenize(text)
    imported = _imported_names(tokens)
    clients = _clients(tokens, imported)
    calls = []
    for index, token in enumerate(tokens):
        if token.kind != "name":
            continue
        kind = _call_kind(tokens, index, imported, clients)
        opening = _call_opening(tokens, index) if kind is not None else None
        if kind is None or opening is None:
            continue
        parser = _Parser(tokens)
        parser.at = opening
        calls.append(_call(kind, token.position, parser.arguments()))
    return calls


def _call_opening(tokens: list[Token], index: int) -> int | None:
    """The index of the call's `(`, after an optional TypeScript `<Type>`."""
    at = index + 1
    if at < len(tokens) and tokens[at].text == "<" and tokens[at].kind == "punct":
        for offset in range(at + 1, min(at + 30, len(tokens))):
            if tokens[offset].kind == "punct" and tokens[offset].text == ">":
                at = offset + 1
                break
    if at < len(tokens) and tokens[at].kind == "punct" and tokens[at].text == "(":
        return at
    return None


def _call_kind(
    tokens: list[Token], index: int, imported: dict[str, str], clients: set[str]
) -> str | None:
    """`track`, `identify`, ... when the name at `index` calls an SDK, else None."""
    name = tokens[index].text
    before = tokens[index - 1] if index > 0 else None
    if before is None or before.kind != "punct" or before.text not in (".", "?."):
        is_definition = before is not None and before.text == "function"
        kind = imported.get(name)
        return kind if kind in KINDS and not is_definition else None
    if name not in KINDS:
        return None
    receiver = []
    at = index - 2
    while at >= 0 and tokens[at].kind == "name":
        receiver.append(tokens[at].text)
        if at == 0 or tokens[at - 1].text not in (".", "?."):
            break
        at -= 2
    if any(is_sdk_receiver(part) or part in imported or part in clients for part in receiver):
        return name
    return None


def _imported_names(tokens: list[Token]) -> dict[str, str]:
    """Names bound by `import ... from "<an SDK module>"`: the local name → the imported one."""
    names: dict[str, str] = {}
    for index, token in enumerate(tokens):
        if token.kind != "name" or token.text != "import":
            continue
        bound: dict[str, str] = {}
        last, renamed = "", None
        for later in tokens[index + 1 : index + 200]:
            if later.kind == "string":
                if is_sdk_module(later.text):
                    names.update(bound)
                break
            if later.kind != "name" or later.text in ("from", "type", "default"):
                continue
            if later.text == "as":  # `track as send`: the file calls it `send`
                renamed = bound.pop(last, None)
                continue
            bound[later.text] = renamed or later.text
            last, renamed = later.text, None
    return names


def _clients(tokens: list[Token], imported: dict[str, str]) -> set[str]:
    """Variables made from an SDK: `const client = new Analytics(...)`, `= AnalyticsBrowser.load()`."""
    clients: set[str] = set()
    for index in range(1, len(tokens) - 2):
        name, sign = tokens[index], tokens[index + 1]
        if name.kind != "name" or sign.kind != "punct" or sign.text != "=":
            continue
        if tokens[index - 1].text not in ("const", "let", "var"):
            continue
        maker = tokens[index + 2]
        if maker.text in ("new", "await") and index + 3 < len(tokens):
            maker = tokens[index + 3]
        if maker.kind == "name" and (maker.text in imported or is_sdk_receiver(maker.text)):
            clients.add(name.text)
    return clients


def _call(kind: str, position: Position, args: list[_Value]) -> Call:
    call = Call(kind, position)
    event, payload = _arguments(kind, args)
    if event is not None and event.token is not None:
        call.event_position = event.position
        if event.token.dynamic:
            call.dynamic_event = True
        else:
            call.event = event.token.text
    if payload is not None and isinstance(payload.value, dict):
        _record(payload, PAYLOAD_KEY[kind], call)
        call.payload = payload.value
    elif payload is not None:
        call.complete = False  # a variable: the source does not say what it holds
    return call


def _arguments(kind: str, args: list[_Value]) -> tuple[_Value | None, _Value | None]:
    """The event name and the properties or traits among a call's arguments. A payload that is
    not an object literal (a variable) is returned too: it makes the call incomplete."""
    first = args[0] if args else None
    if first is not None and isinstance(first.value, dict) and _object_form(kind, first):
        payload = first.keys.get(PAYLOAD_KEY[kind])
        if payload is None and not first.complete:  # it may be in a `...spread`
            payload = _Value(UNKNOWN, first.position)
        return first.keys.get("event"), payload
    if kind in ("track", "group"):
        return (first if kind == "track" else None), args[1] if len(args) > 1 else None
    candidates = [a for a in args if a.token is None]  # not a string: an object or a variable
    literals = [a for a in candidates if isinstance(a.value, dict)]
    chosen = literals or candidates
    return None, chosen[0] if chosen else None


def _object_form(kind: str, first: _Value) -> bool:
    """analytics-node's `track({userId, event, properties})`."""
    keys = set(first.keys)
    if kind == "track":
        return "event" in keys
    if kind == "group":
        return "groupId" in keys
    marker = "traits" if kind == "identify" else "properties"
    return bool(keys & {marker, "userId", "anonymousId"})


def _record(value: _Value, path: str, call: Call) -> None:
    call.positions.setdefault(path, value.position)
    if not value.complete:
        call.complete = False
    for key, inner in value.keys.items():
        at = paths.child(path, key)
        call.positions[at] = value.key_positions[key]
        _record(inner, at, call)
    for index, inner in enumerate(value.items):
        _record(inner, paths.item(path, index), call)
