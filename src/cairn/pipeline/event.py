"""An event as the pipeline's stages see it: the log's columns plus the decoded message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from cairn.storage.base import LogEntry

__all__ = ["Event"]

_decode = msgspec.json.decode
_UNSET: Final[Any] = object()


@dataclass(slots=True)
class Event:
    seq: int
    workspace_id: int
    source_id: str
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp_ms: int
    received_ms: int
    message: dict[str, Any]
    blocked: bool = False  # set by the plans stage: later stages never see the event
    # the identity stage's cleaned ids ((kind, value) pairs), found once for the batch's lookup
    ids: list[tuple[str, str]] | None = None
    # `group_id`, worked out once (three stages and the batch's preload ask for it)
    _group_id: Any = field(default=_UNSET, repr=False, compare=False)

    @classmethod
    def from_log(cls, entry: LogEntry) -> Event:
        """Raises on a body that is not a JSON object (the runner dead-letters the event)."""
        message = _decode(entry.body)
        if not isinstance(message, dict):
            raise ValueError("stored message is not a JSON object")
        return cls(
            entry.seq,
            entry.workspace_id,
            entry.source_id,
            entry.message_id,
            entry.type,
            entry.event,
            entry.user_id,
            entry.anonymous_id,
            entry.timestamp_ms,
            entry.received_ms,
            message,
        )

    def replace_message(self, message: dict[str, Any]) -> None:
        """What later stages see instead of the message as logged (the plans stage's omit)."""
        self.message = message
        self.ids = None
        self._group_id = _UNSET

    def section(self, name: str) -> dict[str, Any]:
        value = self.message.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def context(self) -> dict[str, Any]:
        return self.section("context")

    @property
    def active(self) -> bool:
        """False only when the sender said so (`context.active = false`): server-side calls made
        on a user's behalf do not move their last seen."""
        return self.context.get("active") is not False

    @property
    def group_id(self) -> str | None:
        """The account an event is about: a group call's groupId, else `context.groupId`."""
        if self._group_id is _UNSET:
            self._group_id = self._find_group_id()
        found: str | None = self._group_id
        return found

    def _find_group_id(self) -> str | None:
        value = self.message.get("groupId") if self.type == "group" else None
        if value is None:
            value = self.context.get("groupId")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str) and value.strip() and len(value) <= 512:
            return value
        return None
