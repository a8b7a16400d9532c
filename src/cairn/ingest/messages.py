"""One Segment message in, one log record (or a rejection with its reason) out. Pure: no I/O.

What the collector does to each message, in order (PROTOCOL.md, "Per-message processing"):
top-level `null`s become absent; `type` comes from the path or the item; ids that are numbers become
strings; the batch's `context`/`integrations` merge under the item's own; `messageId` is generated when
missing; `timestamp` is corrected for client clock skew with `sentAt`; `receivedAt`, `channel` and
`version` are set; `context.ip` and `context.userAgent` are filled for browser traffic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import msgspec

from cairn.ingest.decode import ItemError
from cairn.ingest.timestamps import format_ms, parse_ms

__all__ = [
    "MAX_DEPTH",
    "MESSAGE_TYPES",
    "EventRecord",
    "RejectedRecord",
    "Rejection",
    "RequestInfo",
    "depth",
    "normalize",
    "rejected_record",
]

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
SHORT_TYPES = {t[0]: t for t in MESSAGE_TYPES}
_TYPES = frozenset(MESSAGE_TYPES)
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
MAX_DEPTH = 256
"""Deepest nesting of objects and arrays a message may have: far past real events (rarely over
5), well short of what JSON codecs and the read side can recurse through (about 900)."""
_MOBILE_LIBRARIES = ("ios", "android", "react-native", "flutter", "kotlin", "swift", "xamarin")
_NO_TIMESTAMP_BUCKET = -1
_encode = msgspec.json.Encoder().encode


class EventRecord(msgspec.Struct, array_like=True):
    """A message ready for the log: the columns that index it, and the whole message as JSON."""

    workspace_id: int
    source_id: str
    message_id: str
    dedupe_bucket: int
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp_ms: int
    received_ms: int
    body: bytes


class Rejection(msgspec.Struct):
    index: int
    code: str
    message: str


class RejectedRecord(msgspec.Struct, array_like=True):
    """A message the collector refused, kept with its reason for operators (`/api/v1/rejected`)."""

    workspace_id: int
    source_id: str
    received_ms: int
    code: str
    message: str
    body: bytes


@dataclass(slots=True)
class RequestInfo:
    """What the request, not the message, says about every message in it."""

    workspace_id: int
    source_id: str
    received_ms: int
    ip: str | None = None
    user_agent: str | None = None
    browser: bool = False
    sent_at: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    max_message_bytes: int = 32 * 1024
    received_at: str = ""
    sent_ms: int | None = None

    def __post_init__(self) -> None:
        self.received_at = format_ms(self.received_ms)
        self.sent_ms = parse_ms(self.sent_at) if self.sent_at else None
        if self.sent_ms is None:
            self.sent_at = None


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalize(
    raw: Any, index: int, info: RequestInfo, forced_type: str | None = None
) -> EventRecord | Rejection:
    """The log record for message `raw` (item `index` of its request), or why it was refused."""
    if isinstance(raw, ItemError):
        return Rejection(index, raw.code, raw.message)
    try:
        return _normalize(raw, info, forced_type)
    except _Invalid as exc:
        return Rejection(index, exc.code, exc.message)
    except RecursionError:
        return Rejection(
            index, "nesting_too_deep", f"message is nested more than {MAX_DEPTH} levels deep"
        )


def _normalize(raw: Any, info: RequestInfo, forced_type: str | None) -> EventRecord:
    # The hot path of ingest: written for speed (one shallow copy, the common case inline, few
    # calls); bench/ingest.py measures it.
    if type(raw) is not dict:
        raise _Invalid("invalid_message", "message must be a JSON object")
    # A shallow copy: `raw` stays as sent for the rejected list. Nested objects are never edited
    # in place (context is copied before the server fills it).
    message: dict[str, Any] = {
        key: value
        for key, value in raw.items()
        if value is not None and key != "writeKey" and key != "_metadata"
    }
    kind = message.get("type") if forced_type is None else None
    if type(kind) is not str or kind not in _TYPES:  # not one of the six as the libraries send it
        kind = _message_type(message, forced_type)
    user_id = message.get("userId")
    if user_id is not None and (type(user_id) is not str or "\x00" in user_id):
        user_id = message["userId"] = _id_string("userId", user_id)
    anonymous_id = message.get("anonymousId")
    if anonymous_id is not None and (type(anonymous_id) is not str or "\x00" in anonymous_id):
        anonymous_id = message["anonymousId"] = _id_string("anonymousId", anonymous_id)
    if "groupId" in message:
        _take_id(message, "groupId")
    if "previousId" in message:
        _take_id(message, "previousId")
    for name in _OBJECT_FIELDS:
        value = message.get(name)
        if value is not None and type(value) is not dict:
            raise _Invalid("invalid_field", f"{name} must be an object")
    event = _check_required(kind, message, user_id, anonymous_id)
    message_id = _message_id(message)
    if info.context or info.integrations or info.browser or "context" in message:
        _merge_request_context(message, info)
    original_ms, timestamp_ms = _fix_timestamps(message, info)
    message["receivedAt"] = info.received_at
    message["channel"] = _channel(message, info)
    message["version"] = 2
    body = _encode(message)
    if len(body) > info.max_message_bytes:
        raise _Invalid(
            "message_too_large",
            f"message is {len(body)} bytes; the limit is {info.max_message_bytes}",
        )
    # Brackets bound the depth from above: only messages with many of them are walked.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and depth(message) > MAX_DEPTH:
        raise _Invalid("nesting_too_deep", f"message is nested more than {MAX_DEPTH} levels deep")
    return EventRecord(
        info.workspace_id,
        info.source_id,
        message_id,
        _NO_TIMESTAMP_BUCKET if original_ms is None else original_ms // 1000,
        kind,
        event,
        user_id,
        anonymous_id,
        timestamp_ms,
        info.received_ms,
        body,
    )


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (iterative: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if type(node) is dict:
            children: Any = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _take_id(message: dict[str, Any], name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    if type(value) is not str or "\x00" in value:
        value = message[name] = _id_string(name, value)
    return value


def _message_type(message: dict[str, Any], forced_type: str | None) -> str:
    if forced_type is not None:
        message["type"] = forced_type
        return forced_type
    kind = message.get("type")
    if not isinstance(kind, str):
        raise _Invalid("missing_type", "message needs a type: one of " + ", ".join(MESSAGE_TYPES))
    kind = kind.strip().lower()
    if kind not in MESSAGE_TYPES:
        raise _Invalid(
            "invalid_type", f"type {kind[:40]!r} is not one of " + ", ".join(MESSAGE_TYPES)
        )
    message["type"] = kind
    return kind


def _id_string(name: str, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("invalid_id", f"{name} must be a string or a number")
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    if "\x00" in text:
        raise _Invalid("invalid_id", f"{name} must not contain NUL characters")
    return text


def _present(value: str | None) -> bool:
    return value is not None and value != "" and not value.isspace()


def _check_required(
    kind: str, message: dict[str, Any], user_id: str | None, anonymous_id: str | None
) -> str | None:
    """Raise when a required field is missing or mistyped; return the event name, if any."""
    if not (_present(user_id) or _present(anonymous_id)):
        raise _Invalid("missing_id", "message needs a userId or an anonymousId")
    event = message.get("event")
    if event is not None:
        if type(event) is not str:
            raise _Invalid("invalid_event", "event must be a string")
        if "\x00" in event:
            raise _Invalid("invalid_event", "event must not contain NUL characters")
    if kind == "track" and not _present(event):
        raise _Invalid("missing_event", "track needs an event name")
    if kind == "page" or kind == "screen":
        for name in ("name", "category"):
            if name in message and type(message[name]) is not str:
                raise _Invalid("invalid_field", f"{name} must be a string")
    elif kind == "group" and not _present(message.get("groupId")):
        raise _Invalid("missing_group_id", "group needs a groupId")
    elif kind == "alias" and not (_present(user_id) and _present(message.get("previousId"))):
        raise _Invalid("missing_alias_ids", "alias needs a userId and a previousId")
    return event


def _message_id(message: dict[str, Any]) -> str:
    value = message.get("messageId")
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = _id_string("messageId", value)
    elif value is not None and not isinstance(value, str):
        raise _Invalid("invalid_message_id", "messageId must be a string")
    if not value:
        value = _new_message_id()
    elif len(value) > 100:
        raise _Invalid("invalid_message_id", "messageId is longer than 100 characters")
    elif "\x00" in value:
        raise _Invalid("invalid_message_id", "messageId must not contain NUL characters")
    message["messageId"] = value
    return value


def _new_message_id() -> str:
    raw = os.urandom(16).hex()
    return f"cairn-{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _merge_request_context(message: dict[str, Any], info: RequestInfo) -> None:
    if info.context:
        message["context"] = _merge(info.context, message.get("context") or {})
    if info.integrations:
        message["integrations"] = _merge(info.integrations, message.get("integrations") or {})
    context = message.get("context")
    if info.browser or (isinstance(context, dict) and context.get("direct") is True):
        context = message["context"] = dict(context or {})
        if info.ip and not context.get("ip"):
            context["ip"] = info.ip
        if info.user_agent and not context.get("userAgent"):
            context["userAgent"] = info.user_agent


def _merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(under)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _fix_timestamps(message: dict[str, Any], info: RequestInfo) -> tuple[int | None, int]:
    """Correct `timestamp` for clock skew; return the client's own timestamp and the corrected one."""
    if "originalTimestamp" in message:
        _parse_field(message, "originalTimestamp")
    sent_ms = info.sent_ms
    if "sentAt" in message:
        sent_ms = _parse_field(message, "sentAt")
    elif sent_ms is not None:
        message["sentAt"] = info.sent_at
    if "timestamp" not in message:
        message["timestamp"] = info.received_at
        return None, info.received_ms
    client_ms = _parse_field(message, "timestamp")
    message["originalTimestamp"] = message["timestamp"]
    corrected = client_ms if sent_ms is None else info.received_ms - (sent_ms - client_ms)
    message["timestamp"] = format_ms(corrected)
    return client_ms, corrected


def _parse_field(message: dict[str, Any], name: str) -> int:
    value = message[name]
    ms = parse_ms(value) if type(value) is str else None
    if ms is None:
        raise _Invalid("invalid_timestamp", f"{name} is not an ISO-8601 timestamp")
    return ms


_CHANNEL_BY_LIBRARY: dict[str, str] = {}


def _channel(message: dict[str, Any], info: RequestInfo) -> str:
    context = message.get("context")
    library = context.get("library") if type(context) is dict else None
    name = library.get("name", "") if type(library) is dict else ""
    if type(name) is not str:
        name = ""
    channel = _CHANNEL_BY_LIBRARY.get(name)
    if channel is None:
        channel = _library_channel(name.lower())
        if len(_CHANNEL_BY_LIBRARY) < 1000:
            _CHANNEL_BY_LIBRARY[name] = channel
    if channel == "server" and info.browser:
        return "browser"
    return channel


def _library_channel(name: str) -> str:
    if any(marker in name for marker in _MOBILE_LIBRARIES):
        return "mobile"
    if name.startswith(("analytics.js", "analytics-next", "cairn.js")):
        return "browser"
    return "server"


def rejected_record(raw: Any, rejection: Rejection, info: RequestInfo) -> RejectedRecord:
    """The rejected-list entry for a refused message, its JSON kept as far as it can be."""
    if isinstance(raw, ItemError):
        body = raw.text.encode("utf-8", "replace")
    else:
        try:
            body = _encode(raw)
        except (TypeError, ValueError, OverflowError, RecursionError):
            body = repr(raw)[:65536].encode("utf-8", "replace")
    return RejectedRecord(
        workspace_id=info.workspace_id,
        source_id=info.source_id,
        received_ms=info.received_ms,
        code=rejection.code,
        message=f"message {rejection.index}: {rejection.message}",
        body=body[:65536],
    )
