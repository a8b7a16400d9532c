"""Integers from request text: what `str.isdigit` lets through and `int` or a 64-bit column refuse."""

from __future__ import annotations

import pytest

from cairn.ids import parse_int


@pytest.mark.parametrize(
    ("raw", "signed", "expected"),
    [
        ("0", False, 0),
        ("42", False, 42),
        ("007", False, 7),
        ("9" * 18, False, 10**18 - 1),
        ("-5", True, -5),
        ("-5", False, None),
        ("9" * 19, False, None),
        ("", False, None),
        ("-", True, None),
        ("²", False, None),
        ("١٢", False, None),
        (" 1", False, None),
        ("1\n", False, None),
        ("+1", True, None),
        ("1.0", False, None),
        ("1e3", False, None),
    ],
)
def test_parse_int(raw: str, signed: bool, expected: int | None) -> None:
    assert parse_int(raw, signed=signed) == expected
