"""Integers read from request text: ids in URL paths, cursors, epoch milliseconds, counts.

`str.isdigit` is not the test to use before `int`: it accepts digits `int` refuses ("²"), and
it puts no bound on length, while every integer column is 64-bit (a longer number fails to bind
to SQLite). Client input that is not a number here is the caller's 400 or 404, never a 500.
"""

from __future__ import annotations

import re

__all__ = ["parse_int"]

_UNSIGNED = re.compile(r"[0-9]{1,18}")
_SIGNED = re.compile(r"-?[0-9]{1,18}")


def parse_int(raw: str, *, signed: bool = False) -> int | None:
    """`raw` as an int when it is 1 to 18 ASCII digits (with `signed`, after an optional "-"),
    else None. Eighteen digits always fit a signed 64-bit column."""
    return int(raw) if (_SIGNED if signed else _UNSIGNED).fullmatch(raw) else None
