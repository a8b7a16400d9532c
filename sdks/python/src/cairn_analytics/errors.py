"""What the SDK reports through `on_error(error, messages)`. None of these is ever raised into the
caller's code: a call that cannot be sent is reported and dropped, never thrown.

    CairnAnalyticsError
    ├── InvalidMessage            a call without what its type needs (an id, an event name, ...)
    ├── MessageNotSerializable    a value JSON cannot hold (an arbitrary object, NaN, a cycle)
    ├── MessageTooLarge           one message over the 32 KB the server stores
    ├── EventsDropped             the memory queue or the spool was full: new events were refused
    ├── MessagesRejected          the server answered 200 but refused some messages of a batch
    └── DeliveryFailed            a batch given up: an answer retrying cannot fix, or retries ran out
"""

from __future__ import annotations

__all__ = [
    "CairnAnalyticsError",
    "DeliveryFailed",
    "EventsDropped",
    "InvalidMessage",
    "MessageNotSerializable",
    "MessageTooLarge",
    "MessagesRejected",
]


class CairnAnalyticsError(Exception):
    """The root of everything `on_error` receives."""


class InvalidMessage(CairnAnalyticsError):
    """The call misses a required field or has one of the wrong type."""


class MessageNotSerializable(CairnAnalyticsError):
    """A property, trait or context value cannot be written as JSON."""


class MessageTooLarge(CairnAnalyticsError):
    """The message, as JSON, is larger than the server accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message is {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit


class EventsDropped(CairnAnalyticsError):
    """Events were refused because a bounded buffer was full (see the overflow policy)."""

    def __init__(self, count: int, where: str) -> None:
        super().__init__(f"{count} event(s) dropped: the {where} is full")
        self.count = count
        self.where = where


class MessagesRejected(CairnAnalyticsError):
    """The server stored the batch but refused some of its messages; `reasons` holds the
    server's `{"index", "code", "message"}` entries, in the order of the messages reported."""

    def __init__(self, reasons: list[dict[str, object]]) -> None:
        codes = ", ".join(sorted({str(r.get("code")) for r in reasons}))
        super().__init__(f"the server refused {len(reasons)} message(s): {codes}")
        self.reasons = reasons


class DeliveryFailed(CairnAnalyticsError):
    """A batch was given up. `status` is the last HTTP status (None after network errors)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
