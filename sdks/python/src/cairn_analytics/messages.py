"""From a queued call to the JSON line that is spooled and sent.

The caller's thread only records a `Call` tuple; everything here runs later, in the SDK's own
thread (or in the caller's thread in `sync_mode` and with `send=False`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import os
import time
import uuid
from typing import Any

from cairn_analytics.errors import InvalidMessage, MessageNotSerializable, MessageTooLarge
from cairn_analytics.version import VERSION

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Call",
    "Encoder",
    "decode_lines",
    "iso_timestamp",
]

# The server's limit is 32 KB for the message as it stores it, which adds `receivedAt`,
# `originalTimestamp`, `sentAt`, `channel` and `version` (under 200 bytes) to what was sent.
MAX_MESSAGE_BYTES = 32 * 1024 - 512

# (type, user_id, anonymous_id, first, second, third, context, timestamp, integrations, message_id)
# first/second/third by type: track (event, properties, -), identify (traits, -, -),
# page/screen (name, properties, category), group (group_id, traits, -), alias (previous_id, -, -).
Call = tuple[str, Any, Any, Any, Any, Any, Any, Any, Any, Any]

LIBRARY = {"name": "cairn-analytics-python", "version": VERSION}
_ID_TYPES = (str, int, float)


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_dumps = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, default=_json_default, check_circular=True
).encode


def iso_timestamp(value: object) -> str:
    """A call's timestamp as ISO-8601 UTC with milliseconds (`2026-11-29T12:00:00.123Z`)."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    elif isinstance(value, dt.datetime):
        moment = value.astimezone(dt.UTC)  # a naive datetime is local time, as Python reads it
    elif isinstance(value, str):
        return value
    else:
        raise InvalidMessage(f"timestamp must be a datetime, got {type(value).__name__}")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _new_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs from one `os.urandom` call: a third of `uuid.uuid4()`'s cost,
    and safe after `fork()` (a seeded PRNG would repeat the parent's ids in the child)."""
    raw = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = raw[start : start + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return ids


def _put_id(message: dict[str, Any], key: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, _ID_TYPES) or isinstance(value, bool):
        raise InvalidMessage(f"{key} must be a string or a number, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    message[key] = value if isinstance(value, str) else str(value)


def _put_object(message: dict[str, Any], key: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidMessage(f"{key} must be a dict, got {type(value).__name__}")
    message[key] = value


def _put_text(message: dict[str, Any], key: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidMessage(f"{key} must be a string, got {type(value).__name__}")
    message[key] = value


def _fill_by_type(message: dict[str, Any], kind: str, first: Any, second: Any, third: Any) -> None:
    if kind == "track":
        _put_text(message, "event", first)
        _put_object(message, "properties", second)
    elif kind == "identify":
        _put_object(message, "traits", first)
    elif kind in ("page", "screen"):
        _put_text(message, "name", first)
        _put_object(message, "properties", second)
        _put_text(message, "category", third)
    elif kind == "group":
        _put_id(message, "groupId", first)
        _put_object(message, "traits", second)
    elif kind == "alias":
        _put_id(message, "previousId", first)


class Encoder:
    """Turns calls into messages (dicts) and JSON lines, generating message ids in bulk."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads swap it whole

    def message(self, call: Call) -> dict[str, Any]:
        """The message a call stands for; raises `InvalidMessage`."""
        kind, user_id, anonymous_id, first, second, third, context, stamp, integrations, mid = call
        message: dict[str, Any] = {"type": kind}
        _put_id(message, "userId", user_id)
        _put_id(message, "anonymousId", anonymous_id)
        _fill_by_type(message, kind, first, second, third)
        if context is not None and not isinstance(context, dict):
            raise InvalidMessage(f"context must be a dict, got {type(context).__name__}")
        message["context"] = {**context, "library": LIBRARY} if context else {"library": LIBRARY}
        _put_object(message, "integrations", integrations)
        message["timestamp"] = self._timestamp(stamp)
        message["messageId"] = str(mid) if mid is not None else self._next_id()
        return message

    def line(self, message: dict[str, Any]) -> bytes:
        """The message as one line of compact JSON; raises `MessageNotSerializable` or
        `MessageTooLarge`."""
        try:
            data = _dumps(message).encode()
        except (TypeError, ValueError, RecursionError) as error:
            raise MessageNotSerializable(str(error)) from None
        if len(data) > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(len(data), MAX_MESSAGE_BYTES)
        return data

    def _timestamp(self, stamp: object) -> str:
        if type(stamp) is not float:
            return iso_timestamp(stamp)
        second = int(stamp)
        cached, text = self._second
        if second != cached:  # the common case costs one formatting per second
            text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second = (second, text)
        return f"{text}{int((stamp - second) * 1000):03d}Z"

    def _next_id(self) -> str:
        if not self._ids:
            self._ids = _new_ids(256)
        return self._ids.pop()


def decode_lines(lines: list[bytes]) -> list[dict[str, Any]]:
    """Spooled or batched lines back into messages, for `on_error` (lines that are not JSON
    objects come back as `{"raw": text}`)."""
    messages = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        messages.append(
            value if isinstance(value, dict) else {"raw": line.decode(errors="replace")}
        )
    return messages
