"""ISO-8601 timestamps as the Segment libraries write them, and the server's own format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["format_ms", "now_ms", "parse_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Year 1 to year 9999 bounds what datetime can print; anything outside is junk anyway.
_MIN_MS = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // _MS
_MAX_MS = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // _MS
_ZERO = timedelta(0)
_CACHED_SECONDS = 4096
# `YYYY-MM-DDTHH:MM:SS` (as sent) -> its first millisecond, and the reverse for the server's form.
_SECOND_MS: dict[str, int] = {}
_MILLIS = [f"{millis:03d}Z" for millis in range(1000)]


def parse_ms(value: str) -> int | None:
    """Milliseconds since the epoch, or None when `value` is not an ISO-8601 timestamp.

    Accepts `Z` and `+HH:MM` offsets, 0 to 6 fractional digits, and a space for `T`. A timestamp
    without an offset is taken as UTC.
    """
    # The libraries' own forms (`...:SS.mmmZ`, `...:SS.mmm[uuu]+00:00`): their second is looked
    # up, parsed once by the general path below; ingest reads one or two of these per message.
    size = len(value)
    if (size == 24 and value[23] == "Z") or (size in (29, 32) and value.endswith("+00:00")):
        second = _SECOND_MS.get(value[:19])
        fraction = value[20:23] if size == 24 else value[20 : size - 6]
        if second is not None and value[19] == "." and fraction.isascii() and fraction.isdigit():
            return second + int(fraction[:3])
    if not 10 <= size <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        ms = (parsed - _EPOCH) // _MS
    except OverflowError:
        return None
    if parsed.utcoffset() == _ZERO and size in (24, 29, 32) and value[19] == ".":
        if len(_SECOND_MS) > _CACHED_SECONDS:
            _SECOND_MS.clear()
        _SECOND_MS[value[:19]] = ms - ms % 1000
    return ms


_SECONDS: dict[int, str] = {}


def format_ms(ms: int) -> str:
    """`2026-11-29T12:00:00.123Z`: UTC with milliseconds, the form the server writes."""
    ms = min(max(ms, _MIN_MS), _MAX_MS)
    second, millis = divmod(ms, 1000)
    prefix = _SECONDS.get(second)
    if prefix is None:
        moment = _EPOCH + timedelta(seconds=second)
        # Not strftime: its %Y does not zero-pad years below 1000 on every platform.
        prefix = (
            f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        )
        if len(_SECONDS) > _CACHED_SECONDS:
            _SECONDS.clear()
        _SECONDS[second] = prefix
    return prefix + _MILLIS[millis]


def now_ms() -> int:
    return (datetime.now(UTC) - _EPOCH) // _MS
