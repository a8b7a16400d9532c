"""`parse_ms` and `format_ms`: the ISO-8601 forms the Segment libraries write, and the server's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.ingest.timestamps import format_ms, now_ms, parse_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_MS = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
LAST_MS = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
SERVER_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
JAN_1_2024 = 1_704_067_200_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-01-01T00:00:00Z", JAN_1_2024),  # analytics.js, no fraction
        ("2024-01-01T00:00:00.123Z", JAN_1_2024 + 123),  # analytics.js
        ("2024-01-01T00:00:00.123+00:00", JAN_1_2024 + 123),  # analytics-python
        ("2024-01-01T00:00:00.123456+00:00", JAN_1_2024 + 123),  # rudder: microseconds
        ("2024-01-01T00:00:00.999999Z", JAN_1_2024 + 999),  # floored, never rounded up
        ("2024-01-01T02:30:00.000+02:30", JAN_1_2024),
        ("2023-12-31T19:00:00-05:00", JAN_1_2024),
        ("2024-01-01 00:00:00Z", JAN_1_2024),
        ("2024-01-01T00:00:00", JAN_1_2024),  # no offset: UTC
        ("2024-01-01", JAN_1_2024),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_parse_ms_reads_what_clients_write(text: str, ms: int) -> None:
    assert parse_ms(text) == ms


@pytest.mark.parametrize(
    "text",
    ["", "now", "yesterday", "2024", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z",
     "2024-01-01T24:00:01Z", "2024-01-01T00:00:00+25:00", "2024-01-01T00:00:00Zjunk",
     "2024-01-01T00:00:00.000Z" + " " * 40, "1704067200000", "\x00" * 20],
)  # fmt: skip
def test_parse_ms_refuses_what_is_not_a_timestamp(text: str) -> None:
    assert parse_ms(text) is None


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (JAN_1_2024, "2024-01-01T00:00:00.000Z"),
        (JAN_1_2024 + 7, "2024-01-01T00:00:00.007Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-1001, "1969-12-31T23:59:58.999Z"),
        (10**18, "9999-12-30T00:00:00.000Z"),  # clamped: datetime cannot print beyond
        (-(10**18), "0001-01-02T00:00:00.000Z"),
        (-30_610_224_000_001, "0999-12-31T23:59:59.999Z"),  # four-digit years, always
    ],
)
def test_format_ms_writes_utc_milliseconds(ms: int, text: str) -> None:
    assert format_ms(ms) == text


@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS))
def test_format_then_parse_is_the_identity(ms: int) -> None:
    text = format_ms(ms)
    assert SERVER_FORM.match(text)
    assert parse_ms(text) == ms


@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS))
def test_format_ms_agrees_with_datetime(ms: int) -> None:
    moment = EPOCH + timedelta(milliseconds=ms)
    assert format_ms(ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.integers())
def test_format_ms_never_raises(ms: int) -> None:
    assert SERVER_FORM.match(format_ms(ms))


@given(
    moment=st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    spec=st.sampled_from(["seconds", "milliseconds", "microseconds"]),
    zulu=st.booleans(),
)
def test_parse_ms_reads_any_offset_and_precision(
    moment: datetime, offset_minutes: int, spec: str, zulu: bool
) -> None:
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.isoformat(timespec=spec)
    if zulu and offset_minutes == 0:
        text = text.replace("+00:00", "Z")
    truncated = {"seconds": 1_000_000, "milliseconds": 1000, "microseconds": 1}[spec]
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    assert parse_ms(text) == (micros - micros % truncated) // 1000


@given(st.text(max_size=60))
def test_parse_ms_never_raises(text: str) -> None:
    result = parse_ms(text)
    assert result is None or FIRST_MS - 2 * 86_400_000 <= result <= LAST_MS + 2 * 86_400_000


def test_now_ms_is_the_wall_clock() -> None:
    wall = datetime.now(UTC)
    assert abs(now_ms() - (wall - EPOCH) / timedelta(milliseconds=1)) < 1000


@pytest.mark.parametrize(
    "text",
    ["2024-01-01T00:00:00.123Z", "2024-01-01T00:00:00.123+00:00",
     "2024-01-01T00:00:00.123456+00:00", "1969-12-31T23:59:59.999Z"],
)  # fmt: skip
def test_the_cached_second_reads_like_the_first_parse(text: str) -> None:
    # The libraries' forms are parsed once per second, then looked up: the second read of every
    # variant of that second must agree with the general parser, and malformed ones still fail.
    first = parse_ms(text)
    assert first is not None
    assert parse_ms(text) == first
    prefix = text[:20]
    for fraction, suffix in (("000", "Z"), ("999", "Z"), ("500", "+00:00"), ("999999", "+00:00")):
        variant = f"{prefix}{fraction}{suffix}"
        assert parse_ms(variant) == first - first % 1000 + int(fraction[:3])
    for junk in ("12xZ", "1²3Z", "123abc+00:00", "12٣Z", "123+00:0x", "123 +00:00"):
        assert parse_ms(prefix + junk) is None, prefix + junk


@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS), st.booleans(), st.booleans())
def test_parse_ms_reads_the_libraries_forms_twice_alike(ms: int, micro: bool, zulu: bool) -> None:
    moment = EPOCH + timedelta(milliseconds=ms)
    text = moment.isoformat(timespec="microseconds" if micro else "milliseconds")
    if zulu and not micro:
        text = text.replace("+00:00", "Z")
    assert parse_ms(text) == ms
    assert parse_ms(text) == ms
