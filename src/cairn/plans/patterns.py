"""Regular expressions from tracking plans, bounded so that no pattern can stall the pipeline.

Python's `re` backtracks, so a pattern such as `(a+)+$` takes exponential time and `\\d+\\d+x`
polynomial time on a hostile string. A plan's pattern is therefore

- at most `MAX_PATTERN_LENGTH` (500) characters, without back-references or conditionals;
- refused when a group repeated more than once holds an alternation or a repeat that chooses how
  much to take (`?`, `*`, `+`, `{m,n}`): that ambiguity is what makes the exponential cases;
- given a length bound: a pattern with k unbounded repeats (one more when it is not anchored with
  `^`) backtracks at worst about n^k times on a string of n characters, so strings are matched only
  up to the n where n^k stays under `WORK_BUDGET`, and never beyond `MAX_VALUE_LENGTH` (10,000).
  A longer string fails the pattern with a message saying so. A pattern whose bound would fall
  below `MIN_VALUE_LENGTH` (64) is refused as too complex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_VALUE_LENGTH",
    "MIN_VALUE_LENGTH",
    "WORK_BUDGET",
    "PatternError",
    "SafePattern",
    "compile_pattern",
]

MAX_PATTERN_LENGTH = 500
MAX_VALUE_LENGTH = 10_000
MIN_VALUE_LENGTH = 64
WORK_BUDGET = 10_000_000


class PatternError(ValueError):
    """A pattern that does not compile or that could take too long to match."""


@dataclass(frozen=True)
class SafePattern:
    source: str
    regex: re.Pattern[str]
    max_length: int  # longer strings are not matched (they fail the pattern)

    def matches(self, value: str) -> bool | None:
        """True or False as JSON Schema's `pattern` (a search), None when `value` is too long."""
        if len(value) > self.max_length:
            return None
        return self.regex.search(value) is not None


def compile_pattern(source: str) -> SafePattern:
    """Compile a plan's pattern; PatternError says why one is refused."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        regex = re.compile(source)
    except re.error as exc:
        raise PatternError(f"the pattern does not compile: {exc}") from None
    shape = _Shape(source)
    shape.scan()
    max_length = _bound(shape.unbounded + (0 if shape.anchored else 1), shape.factor)
    if max_length < MIN_VALUE_LENGTH:
        anchor = "" if shape.anchored else "anchor it with ^ and "
        raise PatternError(
            "the pattern could take too long to match (its worst case grows too fast with the "
            f"length of the string): {anchor}use fewer repeats"
        )
    return SafePattern(source, regex, max_length)


def _bound(degree: int, factor: int) -> int:
    """The longest string whose worst-case work n^degree * factor stays within the budget."""
    budget = WORK_BUDGET / factor
    if degree <= 1:
        return min(MAX_VALUE_LENGTH, int(budget))
    length = int(budget ** (1 / degree))
    while (length + 1) ** degree <= budget:  # floating-point roots may land one short
        length += 1
    return min(MAX_VALUE_LENGTH, length)


_QUANTIFIER = re.compile(r"\*|\+|\?|\{(\d*)(,?)(\d*)\}")
_FLAGS_ONLY = re.compile(r"\(\?[aiLmsux-]+\)")
_GROUP_OPEN = re.compile(r"\(\?(?::|P<\w+>|<\w+>|=|!|<=|<!|>|[aiLmsux-]+:)?|\(")


@dataclass
class _Group:
    repeats: bool = False
    alternates: bool = False


class _Shape:
    """One pass over a pattern that compiles: its repeats, their nesting, and its anchor."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.stack = [_Group()]
        self.unbounded = 0
        self.factor = 1
        self.anchored = source.startswith(("^", "\\A"))

    def scan(self) -> None:
        position = 0
        atom: _Group | bool = False  # a closed group, True for a plain atom, False for none
        while position < len(self.source):
            position, atom = self._step(position, atom)
        if self.stack[0].alternates:
            self.anchored = False

    def _step(self, position: int, atom: _Group | bool) -> tuple[int, _Group | bool]:
        source, char = self.source, self.source[position]
        if char == "\\":
            if source[position + 1 : position + 2] in tuple("123456789"):
                raise PatternError("back-references are not allowed in patterns")
            return position + 2, True
        if char == "[":
            return _class_end(source, position), True
        if char == "(":
            return self._open(position), False
        if char == ")":
            group = self.stack.pop()
            self.stack[-1].repeats |= group.repeats
            self.stack[-1].alternates |= group.alternates
            return position + 1, group
        if char == "|":
            self.stack[-1].alternates = True
            return position + 1, False
        quantifier = _QUANTIFIER.match(source, position)
        if quantifier is not None and (char != "{" or quantifier.group(1) or quantifier.group(3)):
            self._repeat(quantifier, atom)
            end = quantifier.end()
            return end + (source[end : end + 1] in ("?", "+")), False
        return position + 1, True

    def _open(self, position: int) -> int:
        if self.source.startswith(("(?P=", "(?("), position):
            raise PatternError("back-references and conditionals are not allowed in patterns")
        flags = _FLAGS_ONLY.match(self.source, position)
        if flags is not None:
            return flags.end()
        opened = _GROUP_OPEN.match(self.source, position)
        assert opened is not None  # "(" always matches
        self.stack.append(_Group())
        return opened.end()

    def _repeat(self, quantifier: re.Match[str], atom: _Group | bool) -> None:
        low, high = _limits(quantifier)
        nested = isinstance(atom, _Group) and (atom.repeats or atom.alternates)
        if nested and (high is None or high > 1):
            raise PatternError(
                "a repeated group holds a repetition or an alternation (like (a+)+ or (a|b)*), "
                "which can take exponential time: rewrite it without the nesting"
            )
        if high is None:
            self.unbounded += 1
        elif high != low:
            self.factor = min(self.factor * (high - low + 1), WORK_BUDGET)
        if high is None or high != low:  # a choice of how much to take, even `?`
            self.stack[-1].repeats = True


def _limits(quantifier: re.Match[str]) -> tuple[int, int | None]:
    text = quantifier.group()
    if text in ("*", "+", "?"):
        return {"*": (0, None), "+": (1, None), "?": (0, 1)}[text]
    low, comma, high = quantifier.groups()
    low_value = int(low or 0)
    if not comma:
        return low_value, low_value
    return low_value, int(high) if high else None


def _class_end(source: str, start: int) -> int:
    position = start + 1
    if source[position : position + 1] == "^":
        position += 1
    if source[position : position + 1] == "]":
        position += 1
    while position < len(source) and source[position] != "]":
        position += 2 if source[position] == "\\" else 1
    return position + 1
