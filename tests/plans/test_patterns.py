"""Bounded patterns: what is refused, and the length bound the rest get."""

from __future__ import annotations

import pytest

from cairn.plans.patterns import (
    MAX_PATTERN_LENGTH,
    MAX_VALUE_LENGTH,
    MIN_VALUE_LENGTH,
    WORK_BUDGET,
    PatternError,
    compile_pattern,
)


@pytest.mark.parametrize(
    ("pattern", "bound"),
    [
        (r"^[A-Z]{3}$", MAX_VALUE_LENGTH),  # no unbounded repeat: linear
        (r"^ord_[0-9]+$", MAX_VALUE_LENGTH),  # anchored, one unbounded repeat: linear
        (r"(ab)+", 3162),  # unanchored: n^2 <= budget
        (r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$", 215),  # n^3 <= budget
        (r"^(?=.*\d)(?=.*[a-z]).{8,}$", 215),
        (r"^[a-z]{1,64}$", WORK_BUDGET // 64),  # a bounded repeat of 64 counts 64 times
    ],
)
def test_bounds(pattern: str, bound: int) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.max_length == min(bound, MAX_VALUE_LENGTH)
    assert compiled.max_length >= MIN_VALUE_LENGTH


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a+)+$", "repeated group"),
        (r"(a|aa)*b", "repeated group"),
        (r"(\w+\s?)*$", "repeated group"),
        (r"^([a-z]+(\.[a-z]+)*)$", "repeated group"),
        (r"(a?a?){2,}", "repeated group"),
        (r"(\w)\1", "back-references"),
        (r"(?P<x>a)(?P=x)", "back-references"),
        (r"(a)?(?(1)b|c)", "back-references and conditionals"),
        (r"[a-z]+@[a-z.]+\.[a-z]{2,}", r"anchor it with \^"),  # unanchored: n^4 is too much
        (r"^\d+\d+\d+\d+\d+x", "too long to match"),
        (r"(", "does not compile"),
        ("a" * (MAX_PATTERN_LENGTH + 1), "longer than"),
    ],
)
def test_refused(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^(ab)+$",  # a repeated group without repetition or alternation inside
        r"^(com|org|net)$",  # alternation, not repeated
        r"^[(]+[)]*$",  # brackets inside a class are not groups
        r"^\(a+\)$",  # escaped brackets are not groups
        r"^a{2}(b|c)?$",  # optional (at most once) is not a repetition
        r"^([a-z]{2}\.)+$",  # an exact count inside a repeated group is no choice
        r"(?i)^abc$",
    ],
)
def test_allowed(pattern: str) -> None:
    compile_pattern(pattern)


def test_values_longer_than_the_bound_fail_without_matching() -> None:
    pattern = compile_pattern(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")
    hostile = "a@" + "a." * 200 + "!"
    assert len(hostile) > pattern.max_length
    assert pattern.matches(hostile) is None
    assert pattern.matches("ada@example.com") is True
    assert pattern.matches("ada@example") is False


def test_pattern_is_a_search_as_in_json_schema() -> None:
    assert compile_pattern("b+").matches("abba") is True
