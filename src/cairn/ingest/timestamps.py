"""ISO-8601 timestamps as the Segment libraries write them, and the server's own format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["format_ms", "now_ms", "parse_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Year 1 to year 9999 bounds what datetime can print; anything outside is junk anyway.
_MIN_MS = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // _MS
_MAX_MS = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // _MS


def parse_ms(value: str) -> int | None:
    """Milliseconds since the epoch, or None when `value` is not an ISO-8601 timestamp.

    Accepts `Z` and `+HH:MM` offsets, 0 to 6 fractional digits, and a space for `T`. A timestamp
    without an offset is taken as UTC.
    """
    if not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return (parsed - _EPOCH) // _MS
    except OverflowError:
        return None


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
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        _SECONDS[second] = prefix
    return f"{prefix}{millis:03d}Z"


def now_ms() -> int:
    return (datetime.now(UTC) - _EPOCH) // _MS
