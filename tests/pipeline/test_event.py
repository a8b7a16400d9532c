"""`Event` decodes only the parts of a message the stages read: every answer it gives must be
the one the whole decoded message gives, whatever the message holds (hypothesis)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.pipeline.event import Event
from cairn.storage.base import LogEntry

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
    max_size=3),
    max_leaves=8,
)  # fmt: skip
_ids = st.none() | st.text(max_size=4) | st.integers(0, 10) | st.floats(0, 10) | st.booleans()
_context = _json | st.fixed_dictionaries(
    {}, optional={"groupId": _ids, "active": _json, "library": _json, "traits": _json}
)
_message = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "identify", "group", "alias", "page", "screen"])},
    optional={
        "event": _json, "traits": _json, "properties": _json, "previousId": _ids,
        "groupId": _ids, "context": _context, "timestamp": st.text(max_size=4), "extra": _json,
    },
)  # fmt: skip


def _event(message: dict[str, Any], body: bytes | None = None) -> Event:
    body = msgspec.json.encode(message) if body is None else body
    entry = LogEntry(1, 1, "src", "m-1", message["type"], None, None, None, 0, 0, body)
    return Event.from_log(entry)


def _reference(message: dict[str, Any]) -> dict[str, Any]:
    """The answers as read from the whole message (the rules the stages state)."""

    def section(name: str) -> dict[str, Any]:
        value = message.get(name)
        return value if isinstance(value, dict) else {}

    context = section("context")
    group = message.get("groupId") if message["type"] == "group" else None
    if group is None:
        group = context.get("groupId")
    if isinstance(group, int | float) and not isinstance(group, bool):
        group = str(int(group)) if float(group).is_integer() else str(group)
    if not (isinstance(group, str) and group.strip() and len(group) <= 512):
        group = None
    naming = (message.get("type"), "event" in message, message.get("event"),
              message.get("properties"), message.get("traits"))  # fmt: skip
    return {
        "traits": section("traits"),
        "properties": section("properties"),
        "context": context,
        "previous_id": message.get("previousId"),
        "active": context.get("active") is not False,
        "group_id": group,
        "naming": naming,
    }


def _answers(ev: Event) -> dict[str, Any]:
    return {
        "traits": ev.section("traits"),
        "properties": ev.section("properties"),
        "context": ev.context,
        "previous_id": ev.previous_id,
        "active": ev.active,
        "group_id": ev.group_id,
        "naming": ev.naming_parts(),
    }  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(_message)
def test_the_parts_answer_as_the_whole_message_does(message: dict[str, Any]) -> None:
    ev = _event(message)
    expected = _reference(msgspec.json.decode(msgspec.json.encode(message)))
    assert _answers(ev) == expected
    assert ev.message == msgspec.json.decode(msgspec.json.encode(message))
    assert _answers(ev) == expected  # and again once the whole message is decoded


@settings(max_examples=200, deadline=None)
@given(_message, _message)
def test_a_replaced_message_is_what_the_stages_read_next(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    ev = _event(first)
    _answers(ev)  # remembered parts of the first message must not survive the replacement
    ev.replace_message({**second, "type": first["type"]})
    assert _answers(ev) == _reference({**second, "type": first["type"]})


def test_a_repeated_key_counts_as_its_last_value_as_in_the_whole_message() -> None:
    body = b'{"type":"identify","traits":{"a":1},"context":{"active":false},"traits":{"a":2}}'
    ev = _event({"type": "identify"}, body)
    assert ev.section("traits") == {"a": 2}
    assert ev.active is False


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"{not json", b'{"type": "track"'])
def test_a_body_that_is_no_json_object_raises(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):  # a ValidationError for valid JSON of another kind
        _event({"type": "track"}, body)
