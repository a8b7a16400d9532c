"""The text form of a condition: `parse` reads it into the tree, `to_text` writes it back.

The grammar is in docs/finder.md ("The text form"). The parser builds the JSON form, checking each
piece with the tree's own validators as it reads it (so both forms accept the same conditions and
every error has a position), then hands it to `from_json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from cairn.finder.tree import (
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_NODES,
    PROFILE_FIELDS,
    UNITS,
    All,
    AnyOf,
    Condition,
    ConditionError,
    Did,
    InSegment,
    Not,
    Predicate,
    Window,
    _amount,
    _name,
    _predicate,
    _unit,
    _window,
    check_value,
    from_json,
    parse_path,
)
from cairn.ingest.timestamps import format_ms

__all__ = ["KEYWORDS", "MAX_TEXT", "parse", "to_text"]

MAX_TEXT = 100_000
# Parentheses and `not`s open at once. Printing a valid tree never needs more than MAX_DEPTH; the
# rest is room for redundant parentheses. Bounding it bounds the parser's recursion.
MAX_NESTING = 2 * MAX_DEPTH

# The language's words: the printer puts a name that is one of them (in any case) in backticks.
KEYWORDS = frozenset(("and", "or", "not", "did", "in", "segment", "where", "account", "first_seen",
    "last_seen", "true", "false", "null", "exists", "contains", "starts", "ends", "with", "before",
    "after", "within", "last", "more", "than", "ago", "at", "least", "most", "exactly", "time",
    "times", "between", "ever", "minute", "minutes", "hour", "hours", "day", "days"))  # fmt: skip
_EXPECTED_OPERATOR = (
    "an operator (=, !=, contains, starts with, ends with, exists, not exists, >, >=, <, <=, in, "
    "before, after, within last, more than)"
)
_EXPECTED_CONDITION = 'a condition (a trait test, did, in segment, not or "(")'
_EXPECTED_VALUE = 'a value (a "string", a number, true, false or null)'

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_STRING_BODY = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_SPACE = re.compile(r"\s*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SYMBOLS = ("!=", ">=", "<=", "=", ">", "<", "(", ")", "[", "]", ",", ".")
_SYMBOL_OPS = ("=", "!=", ">", ">=", "<", "<=")
_WORD_OPS = ("contains", "exists", "in", "before", "after")
_LITERALS = {"true": True, "false": False, "null": None}


def parse(text: str) -> Condition:
    """The condition `text` says, or ConditionError with the position of the first problem."""
    if len(text) > MAX_TEXT:
        raise ConditionError(
            f"a condition in text is at most {MAX_TEXT} characters", position=MAX_TEXT
        )
    parser = _Parser(text)
    node = parser.condition()
    parser.check_depth(node, 0)
    return from_json(node)


# Reading ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "name" (in backticks), "string", "number", "symbol" or "end"
    text: str  # as written
    start: int
    value: Any = None  # a string's or number's value, a backticked name's name

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words

    def is_symbol(self, symbol: str) -> bool:
        return self.kind == "symbol" and self.text == symbol

    def starts_path(self) -> bool:
        return self.kind == "name" or (self.kind == "word" and not self.is_word("and", "or"))


class _Lexer:
    """Tokens on demand, so that an error early in the text is reported before a later one."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[_Token] = []
        self.end = 0

    def token(self, index: int) -> _Token:
        while len(self.tokens) <= index:
            start = _SPACE.match(self.text, self.end).end()  # type: ignore[union-attr]
            token = self._read(start) if start < len(self.text) else _Token("end", "", start)
            self.end = start + len(token.text)
            self.tokens.append(token)
        return self.tokens[index]

    def _read(self, start: int) -> _Token:
        char = self.text[start]
        if char == '"':
            return self._string(start)
        if char == "`":
            return self._quoted_name(start)
        number = _NUMBER.match(self.text, start)
        if number:
            return _Token("number", number.group(), start, self._number(number))
        name = _NAME.match(self.text, start)
        if name:
            return _Token("word", name.group(), start)
        for symbol in _SYMBOLS:
            if self.text.startswith(symbol, start):
                return _Token("symbol", symbol, start)
        raise _error(self.text, f"unexpected character {char!r}", start)

    def _number(self, match: re.Match[str]) -> int | float:
        if match.group(1) or match.group(2):
            return float(match.group())
        if len(match.group()) > 20:  # past any valid value, and int() refuses very long ones
            raise _error(self.text, "a number out of range", match.start())
        return int(match.group())

    def _string(self, start: int) -> _Token:
        end = _STRING_BODY.match(self.text, start).end()  # type: ignore[union-attr]
        if self.text.startswith('"', end):
            raw = self.text[start : end + 1]
            return _Token("string", raw, start, json.loads(raw))
        if end == len(self.text) or self.text[end] in "\r\n":
            raise _error(self.text, 'unclosed string: expected a closing "', start)
        if self.text[end] == "\\":
            escapes = '\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX'
            raise _error(self.text, f"invalid escape in a string (use {escapes})", end)
        raise _error(self.text, "a control character in a string (write it as \\uXXXX)", end)

    def _quoted_name(self, start: int) -> _Token:
        after = start + 1
        while True:
            close = self.text.find("`", after)
            if close == -1:
                raise _error(self.text, "unclosed name: expected a closing `", start)
            if not self.text.startswith("``", close):
                break
            after = close + 2
        raw = self.text[start : close + 1]
        return _Token("name", raw, start, raw[1:-1].replace("``", "`"))


class _Parser:
    """Recursive descent over the grammar in docs/finder.md, producing the JSON form."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = _Lexer(text)
        self.index = 0
        self.nesting = 0
        self.nodes = 0
        self.starts: dict[int, int] = {}  # id of a JSON node -> where it starts in the text

    # tokens
    def peek(self) -> _Token:
        return self.lexer.token(self.index)

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def accept(self, *words: str) -> bool:
        if self.peek().is_word(*words):
            self.index += 1
            return True
        return False

    def expect(self, word: str, expected: str = "") -> None:
        if not self.accept(word):
            self.fail(expected or f'"{word}"')

    def fail(self, expected: str) -> NoReturn:
        token = self.peek()
        after = f" after {_shown(self.lexer.tokens[self.index - 1])}" if self.index else ""
        found = "the end of the input" if token.kind == "end" else _shown(token)
        raise _error(self.text, f"expected {expected}{after}, found {found}", token.start)

    def check(self, start: int, check: Callable[..., Any], *args: Any) -> Any:
        """`check(*args)`, with a ConditionError moved to `start` in the text."""
        try:
            return check(*args)
        except ConditionError as error:
            raise _error(self.text, error.message, start) from None

    def node(self, node: dict[str, Any], start: int) -> dict[str, Any]:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _error(self.text, f"a condition has at most {MAX_NODES} nodes", start)
        self.starts[id(node)] = start
        return node

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        if self.nesting >= MAX_NESTING:
            message = f"parentheses and not are nested at most {MAX_NESTING} deep"
            raise _error(self.text, message, token.start)
        self.nesting += 1
        try:
            yield
        finally:
            self.nesting -= 1

    def check_depth(self, node: dict[str, Any], depth: int) -> None:
        if depth > MAX_DEPTH:
            message = f"a condition is nested at most {MAX_DEPTH} levels deep"
            raise _error(self.text, message, self.starts[id(node)])
        for child in _children(node):
            self.check_depth(child, depth + 1)

    # conditions
    def condition(self) -> dict[str, Any]:
        if self.peek().kind == "end":
            self.fail(_EXPECTED_CONDITION)
        node = self.any_of(False)
        if self.peek().kind != "end":
            self.fail("and, or or the end of the condition")
        return node

    def any_of(self, in_where: bool) -> dict[str, Any]:
        return self.chain("or", self.all_of, in_where)

    def all_of(self, in_where: bool) -> dict[str, Any]:
        return self.chain("and", self.unary, in_where)

    def chain(
        self, word: str, item: Callable[[bool], dict[str, Any]], in_where: bool
    ) -> dict[str, Any]:
        start = self.peek().start
        items = [item(in_where)]
        while self.accept(word):
            items.append(item(in_where))
        return items[0] if len(items) == 1 else self.node({word: items}, start)

    def unary(self, in_where: bool) -> dict[str, Any]:
        token = self.peek()
        if token.is_word("not"):
            with self.nested(token):
                self.take()
                return self.node({"not": self.unary(in_where)}, token.start)
        if token.is_symbol("("):
            with self.nested(token):
                self.take()
                node = self.any_of(in_where)
                if not self.peek().is_symbol(")"):
                    opened = _line_column(self.text, token.start)
                    self.fail(f'and, or or ")" (to close the "(" of {opened})')
                self.take()
                return node
        return self.property_test() if in_where else self.atom()

    def atom(self) -> dict[str, Any]:
        token = self.peek()
        if token.is_word("did"):
            return self.did()
        if token.is_word("in"):
            return self.segment()
        if token.is_word("account"):
            return self.account_test()
        if token.is_word(*PROFILE_FIELDS):
            return self.profile_test()
        if token.starts_path():
            return self.predicate("trait", self.path(), token.start)
        self.fail(_EXPECTED_CONDITION)

    def account_test(self) -> dict[str, Any]:
        start = self.take().start
        if not self.peek().is_symbol("."):
            self.fail('"." and a trait of the account (write `account` for a trait of that name)')
        self.take()
        return self.predicate("account_trait", self.path(), start)

    def profile_test(self) -> dict[str, Any]:
        field = self.take()
        if self.peek().is_symbol("."):
            self.fail(f"an operator (write `{field.text}` for a trait of that name)")
        return self.predicate("profile", field.text.lower(), field.start)

    def segment(self) -> dict[str, Any]:
        start = self.take().start
        self.expect("segment")
        name = self.peek()
        if name.kind != "string":
            self.fail("the segment's name in double quotes")
        self.take()
        segment = self.check(name.start, _name, name.value, "a segment name", "")
        return self.node({"in_segment": segment}, start)

    def property_test(self) -> dict[str, Any]:
        token = self.peek()
        if token.is_word("did", "in", "account", *PROFILE_FIELDS):
            message = (
                "inside where only the event's properties are tested "
                f"(write `{token.text}` for a property of that name)"
            )
            raise _error(self.text, message, token.start)
        if token.starts_path():
            return self.predicate("property", self.path(), token.start)
        self.fail('a test of the event\'s properties (such as total > 100) or "("')

    def path(self) -> str:
        start = self.peek().start
        names = [self.path_name()]
        while self.peek().is_symbol("."):
            self.take()
            names.append(self.path_name())
        joined = ".".join(names)
        self.check(start, parse_path, joined, "")
        return joined

    def path_name(self) -> str:
        token = self.peek()
        if token.kind == "name" and "." in token.value:
            message = "a name cannot contain a dot: dots separate the names of a path"
            raise _error(self.text, message, token.start)
        if token.kind not in ("name", "word"):
            self.fail("a name")
        self.take()
        return str(token.value) if token.kind == "name" else token.text

    # tests of values
    def predicate(self, scope: str, path: str, start: int) -> dict[str, Any]:
        op_start = self.peek().start
        op = self.operator()
        node: dict[str, Any] = {scope: path, "op": op}
        if op not in ("exists", "not_exists"):
            node["value"] = self.value_for(op)
        self.check(op_start, _predicate, node, scope, "")
        return self.node(node, start)

    def operator(self) -> str:
        token = self.peek()
        word = token.text.lower() if token.kind == "word" else ""
        if (token.kind == "symbol" and token.text in _SYMBOL_OPS) or word in _WORD_OPS:
            self.take()
            return word or token.text
        if word in ("starts", "ends"):
            self.take()
            self.expect("with")
            return f"{word}_with"
        if word == "not":
            self.take()
            self.expect("exists", '"exists" (to negate another test, put not before it)')
            return "not_exists"
        if word == "within":
            self.take()
            self.accept("last")
            return "within_last"
        if word == "more":
            self.take()
            self.expect("than")
            return "more_than_ago"
        self.fail(_EXPECTED_OPERATOR)

    def value_for(self, op: str) -> Any:
        if op == "in":
            return self.values()
        if op in ("within_last", "more_than_ago"):
            amount, unit = self.duration()
            if op == "more_than_ago":
                self.expect("ago")
            return {"amount": amount, "unit": unit}
        start = self.peek().start
        value = self.scalar()
        self.check(start, check_value, op, value, "")
        return value

    def scalar(self) -> Any:
        token = self.peek()
        if token.kind in ("string", "number"):
            value = token.value
        elif token.is_word(*_LITERALS):
            value = _LITERALS[token.text.lower()]
        else:
            self.fail(_EXPECTED_VALUE)
        self.take()
        return value

    def values(self) -> list[Any]:
        opening = self.peek()
        if not opening.is_symbol("["):
            self.fail('a list such as ["a", "b"]')
        self.take()
        values: list[Any] = []
        if not self.peek().is_symbol("]"):
            values.append(self.item(values))
            while self.peek().is_symbol(","):
                self.take()
                values.append(self.item(values))
        if not self.peek().is_symbol("]"):
            self.fail(f'"," or "]" (to close the "[" of {_line_column(self.text, opening.start)})')
        self.take()
        self.check(opening.start, check_value, "in", values, "")
        return values

    def item(self, values: list[Any]) -> Any:
        start = self.peek().start
        if len(values) == MAX_IN_VALUES:
            raise _error(self.text, f"`in` takes at most {MAX_IN_VALUES} values", start)
        return self.check(start, check_value, "=", self.scalar(), "")

    def duration(self) -> tuple[int, str]:
        number = self.peek()
        if number.kind != "number":
            self.fail("a number")
        self.take()
        amount: int = self.check(number.start, _amount, number.value, "")
        word = self.peek().text.lower() if self.peek().kind == "word" else ""
        if word not in UNITS and f"{word}s" not in UNITS:
            self.fail("a unit (minutes, hours or days)")
        self.take()
        return amount, _unit(word, "")

    def date(self) -> Any:
        start = self.peek().start
        value = self.scalar()
        self.check(start, check_value, "before", value, "")  # a date as `before` takes it
        return value

    # events
    def did(self) -> dict[str, Any]:
        did = self.take()
        negate = self.accept("not")
        name = self.peek()
        if name.kind != "string":
            self.fail('the event\'s name in double quotes (did "Signed Up")')
        self.take()
        event = self.check(name.start, _name, name.value, "an event name", "")
        node: dict[str, Any] = {"did_not" if negate else "did": event}
        count = self.count(negate)
        if count is not None:
            node["count"] = count
        window = self.window()
        if window is not None:
            node["window"] = window
        if self.accept("where"):
            node["where"] = self.unary(True)
        return self.node(node, did.start)

    def count(self, negate: bool) -> dict[str, Any] | None:
        token = self.peek()
        if not token.is_word("at", "exactly"):
            return None
        if negate:
            message = 'did not takes no count (write not did "..." at least N times)'
            raise _error(self.text, message, token.start)
        self.take()
        op = "exactly"
        if token.is_word("at"):
            which = self.peek()
            if not which.is_word("least", "most"):
                self.fail('"least" or "most"')
            op = f"at_{self.take().text.lower()}"
        number = self.peek()
        if number.kind != "number":
            self.fail("a number of times")
        self.take()
        count = {"op": op, "n": number.value}
        self.check(number.start, from_json, {"did": "-", "count": count})  # the tree's rule
        if not self.accept("times", "time"):
            self.fail('"times"')
        return count

    def window(self) -> Any:
        token = self.peek()
        if self.accept("ever"):
            return "ever"
        if self.accept("in"):
            self.expect("last", '"last" (did "..." in last 30 days)')
            amount, unit = self.duration()
            window: Any = {"last": amount, "unit": unit}
        elif self.accept("between"):
            start = self.date()
            self.expect("and")
            window = {"between": [start, self.date()]}
        else:
            return None
        self.check(token.start, _window, window, "")
        return window


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    items = node.get("and") or node.get("or")
    if items is not None:
        return list(items)
    if "not" in node:
        return [node["not"]]
    return [node["where"]] if "where" in node else []


def _shown(token: _Token) -> str:
    text = token.text if len(token.text) <= 30 else f"{token.text[:29]}…"
    return text if token.kind == "string" else f'"{text}"'


def _line_column(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return f"line {line}, column {column}"


def _error(text: str, message: str, position: int) -> ConditionError:
    """`message` at line L, column C, and the line with a caret under the position."""
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    left = max(line_start, position - 40)
    right = min(len(text) if line_end == -1 else line_end, position + 40)
    excerpt = re.sub(r"\s", " ", text[left:right])
    caret = " " * (position - left) + "^"
    full = f"{message} at {_line_column(text, position)}\n  {excerpt}\n  {caret}"
    return ConditionError(full, position=position)


# Writing ----------------------------------------------------------------------------------------
_OR, _AND, _UNARY = 0, 1, 2


def to_text(cond: Condition) -> str:
    """The canonical text of a condition; `parse` reads it back to an equal tree."""
    return _text(cond, _OR)


def _text(cond: Condition, level: int) -> str:
    """`cond` where an operand binding at least as tightly as `level` is needed."""
    if isinstance(cond, AnyOf):
        body = " or ".join(_text(item, _AND) for item in cond.items)
        return f"({body})" if level > _OR else body
    if isinstance(cond, All):
        body = " and ".join(_text(item, _UNARY) for item in cond.items)
        return f"({body})" if level > _AND else body
    if isinstance(cond, Not):
        return f"not {_text(cond.item, _UNARY)}"
    if isinstance(cond, InSegment):
        return f"in segment {_string(cond.name)}"
    if isinstance(cond, Predicate):
        return _predicate_text(cond)
    return _did_text(cond)


def _predicate_text(p: Predicate) -> str:
    if p.scope == "profile":
        subject = p.path[0]
    else:
        prefix = "account." if p.scope == "account_trait" else ""
        subject = prefix + ".".join(_name_text(name) for name in p.path)
    return f"{subject} {_test_text(p.op, p.value)}"


def _test_text(op: str, value: Any) -> str:
    if op in ("exists", "not_exists"):
        return op.replace("_", " ")
    if op == "in":
        return f"in [{', '.join(_value_text(v) for v in value)}]"
    if op == "within_last":
        return f"within last {_duration_text(value)}"
    if op == "more_than_ago":
        return f"more than {_duration_text(value)} ago"
    if op in ("before", "after"):
        return f"{op} {_string(format_ms(value))}"
    return f"{op.replace('_', ' ')} {_value_text(value)}"


def _did_text(did: Did) -> str:
    words = ["did not" if did.negate else "did", _string(did.event)]
    if not did.negate and (did.count_op, did.n) != ("at_least", 1):
        times = "time" if did.n == 1 else "times"
        words.append(f"{did.count_op.replace('_', ' ')} {did.n} {times}")
    words.extend(_window_text(did.window))
    if did.where is not None:
        words.append(f"where {_text(did.where, _UNARY)}")
    return " ".join(words)


def _window_text(window: Window) -> list[str]:
    if window.last is not None:
        return [f"in last {_duration_text(window.last)}"]
    if window.between is not None:
        start, end = (_string(format_ms(ms)) for ms in window.between)
        return [f"between {start} and {end}"]
    return []


def _duration_text(duration: tuple[int, str]) -> str:
    amount, unit = duration
    return f"{amount} {unit[:-1] if amount == 1 else unit}"


def _value_text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return _string(value)
    return repr(value)  # an int, or a float whose repr has a "." or an exponent


def _string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    # A lone surrogate cannot be encoded as UTF-8; its escape can.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _name_text(name: str) -> str:
    if _NAME.fullmatch(name) and name.lower() not in KEYWORDS:
        return name
    return "`" + name.replace("`", "``") + "`"
