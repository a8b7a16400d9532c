"""An event as the pipeline's stages see it: the log's columns plus what they read of the message.

The stages read a few parts of a message: `traits`, `properties`, `previousId`, `groupId`,
`context.groupId` and `context.active`. `from_log` decodes those alone (msgspec skips the rest
of the JSON without building it: the context, the library, the page, the timestamps); the whole
message is decoded only when something asks for it (`message`: a tracking plan's check). On the
pipeline's throughput row the whole decode and the freeing of what it built were about 10 of 60
µs of the stages' thread per event (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from cairn.storage.base import LogEntry

__all__ = ["Event"]

_decode = msgspec.json.decode
_UNSET: Final[Any] = object()
_NO_CONTEXT = msgspec.Raw(b"{}")


class _Parts(msgspec.Struct):
    """The parts of a message the stages read (a key missing from the message stays UNSET)."""

    type: Any = msgspec.UNSET
    event: Any = msgspec.UNSET
    traits: Any = msgspec.UNSET
    properties: Any = msgspec.UNSET
    previousId: Any = None
    groupId: Any = None
    context: msgspec.Raw = _NO_CONTEXT


class _Context(msgspec.Struct):
    groupId: Any = None
    active: Any = None


_decode_parts = msgspec.json.Decoder(_Parts)
_decode_context = msgspec.json.Decoder(_Context)


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
    body: Any  # the message as logged (JSON bytes)
    parts: _Parts
    blocked: bool = False  # set by the plans stage: later stages never see the event
    # the identity stage's cleaned ids ((kind, value) pairs), found once for the batch's lookup
    ids: list[tuple[str, str]] | None = None
    # the whole message, once something asked for it (or the plans stage replaced it)
    _message: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # `group_id`, worked out once (three stages and the batch's preload ask for it)
    _group_id: Any = field(default=_UNSET, repr=False, compare=False)
    _context: _Context | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_log(cls, entry: LogEntry) -> Event:
        """Raises on a body that is not a JSON object (the runner dead-letters the event)."""
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
            entry.body,
            _decode_parts.decode(entry.body),
        )

    @property
    def message(self) -> dict[str, Any]:
        """The whole message (decoded on first use)."""
        if self._message is None:
            message = _decode(self.body)
            if not isinstance(message, dict):
                raise ValueError("stored message is not a JSON object")
            self._message = message
        return self._message

    def replace_message(self, message: dict[str, Any]) -> None:
        """What later stages see instead of the message as logged (the plans stage's omit)."""
        self._message = message
        self.ids = None
        self._group_id = _UNSET
        self._context = None

    def section(self, name: str) -> dict[str, Any]:
        """`traits`, `properties` or `context` when it is an object, else empty."""
        if self._message is not None or name not in ("traits", "properties"):
            value = self.message.get(name)
        else:
            value = getattr(self.parts, name)
        return value if isinstance(value, dict) else {}

    def naming_parts(self) -> tuple[Any, bool, Any, Any, Any]:
        """What the naming rules read of the message (`check_parts`): its type, whether it has
        an event key, the event, its properties and its traits."""
        if self._message is not None:
            m = self._message
            return m.get("type"), "event" in m, m.get("event"), m.get("properties"), m.get("traits")
        p = self.parts
        return (
            None if p.type is msgspec.UNSET else p.type,
            p.event is not msgspec.UNSET,
            None if p.event is msgspec.UNSET else p.event,
            None if p.properties is msgspec.UNSET else p.properties,
            None if p.traits is msgspec.UNSET else p.traits,
        )

    @property
    def previous_id(self) -> Any:
        """An alias call's previousId, as sent."""
        if self._message is not None:
            return self._message.get("previousId")
        return self.parts.previousId

    @property
    def context(self) -> dict[str, Any]:
        return self.section("context")

    def _context_parts(self) -> _Context:
        """`context.groupId` and `context.active` (both None when the context is no object)."""
        if self._context is None:
            if self._message is not None:
                found = self.section("context")
                self._context = _Context(found.get("groupId"), found.get("active"))
            else:
                try:
                    self._context = _decode_context.decode(self.parts.context)
                except msgspec.ValidationError:  # not an object: no context, as section() says
                    self._context = _Context()
        return self._context

    @property
    def active(self) -> bool:
        """False only when the sender said so (`context.active = false`): server-side calls made
        on a user's behalf do not move their last seen."""
        return self._context_parts().active is not False

    @property
    def group_id(self) -> str | None:
        """The account an event is about: a group call's groupId, else `context.groupId`."""
        if self._group_id is _UNSET:
            self._group_id = self._find_group_id()
        found: str | None = self._group_id
        return found

    def _find_group_id(self) -> str | None:
        value = None
        if self.type == "group":
            value = self.message.get("groupId") if self._message is not None else self.parts.groupId
        if value is None:
            value = self._context_parts().groupId
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str) and value.strip() and len(value) <= 512:
            return value
        return None
