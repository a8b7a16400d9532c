"""What the SDK builds from each call: fields, ids, timestamps, JSON, limits."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cairn_analytics import Client, MessageNotSerializable, MessageTooLarge
from cairn_analytics.testing import capture
from tests.sdks.python.conftest import Errors

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LIBRARY = {"name": "cairn-analytics-python", "version": "0.1.0"}


@pytest.fixture
def offline(errors: Errors) -> Client:
    return Client(send=False, on_error=errors)


def built(client: Client, call: Callable[[], bool]) -> dict[str, Any]:
    with capture(client) as messages:
        assert call() is True
    assert len(messages) == 1
    return messages[0]


def test_track_message(offline: Client) -> None:
    message = built(offline, lambda: offline.track("u_1", "Order Completed", {"total": 42.5}))
    assert UUID4.match(message.pop("messageId"))
    assert ISO_MS.match(message.pop("timestamp"))
    assert message == {
        "type": "track",
        "userId": "u_1",
        "event": "Order Completed",
        "properties": {"total": 42.5},
        "context": {"library": LIBRARY},
    }


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c: c.identify("u_1", {"plan": "pro"}), {"type": "identify", "traits": {"plan": "pro"}}),
        (lambda c: c.group("u_1", "acme", {"employees": 5}),
         {"type": "group", "groupId": "acme", "traits": {"employees": 5}}),
        (lambda c: c.page("u_1", "Docs", "Install", {"path": "/x"}),
         {"type": "page", "category": "Docs", "name": "Install", "properties": {"path": "/x"}}),
        (lambda c: c.screen("u_1", None, "Home"), {"type": "screen", "name": "Home"}),
        (lambda c: c.alias("anon_9", "u_1"), {"type": "alias", "previousId": "anon_9"}),
    ],
)  # fmt: skip
def test_each_call(
    offline: Client, call: Callable[[Client], bool], expected: dict[str, Any]
) -> None:
    message = built(offline, lambda: call(offline))
    assert message["userId"] == "u_1"
    assert {k: message[k] for k in expected} == expected


def test_given_fields_are_kept(offline: Client) -> None:
    moment = dt.datetime(2024, 7, 1, 8, 0, 0, 123456, tzinfo=dt.UTC)
    context = {"ip": "1.2.3.4"}
    message = built(offline, lambda: offline.track(
        anonymous_id=42, event="Signed In", context=context, timestamp=moment,
        integrations={"All": False}, message_id="m-1"))  # fmt: skip
    assert message["anonymousId"] == "42"
    assert "userId" not in message
    assert message["timestamp"] == "2024-07-01T08:00:00.123Z"
    assert message["messageId"] == "m-1"
    assert message["integrations"] == {"All": False}
    assert message["context"] == {"ip": "1.2.3.4", "library": LIBRARY}
    assert context == {"ip": "1.2.3.4"}, "the caller's dict is not changed"


def test_message_ids_are_unique(offline: Client) -> None:
    with capture(offline) as messages:
        for n in range(2000):
            offline.track("u", "E", {"n": n})
    ids = {m["messageId"] for m in messages}
    assert len(ids) == 2000
    assert all(UUID4.match(i) for i in ids)


def test_python_values_become_json(offline: Client) -> None:
    message = built(offline, lambda: offline.track("u", "E", {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "day": dt.date(2024, 1, 2),
        "price": decimal.Decimal("9.50"), "id": uuid.UUID(int=1), "tags": {"a"}, "pair": (1, 2)}))  # fmt: skip
    assert message["properties"]["day"] == dt.date(2024, 1, 2)  # captured as given...
    line = offline._outbox.encoder.line(message)  # ...and written as JSON like this
    assert b'"when":"2024-01-02T03:04:05+00:00"' in line
    assert b'"day":"2024-01-02","price":9.5' in line
    assert b'"tags":["a"],"pair":[1,2]' in line


class Opaque:
    pass


def cycle() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(
    "properties",
    [{"o": Opaque()}, {"x": float("nan")}, {"x": float("inf")}, cycle(), {(1, 2): "tuple key"}],
    ids=["object", "nan", "inf", "cycle", "tuple-key"],
)
def test_values_json_cannot_hold_are_reported_not_raised(
    offline: Client, errors: Errors, properties: dict[str, Any]
) -> None:
    with capture(offline) as messages:
        assert offline.track("u", "E", properties) is False  # reported, never raised
    assert messages == []
    [(_error, reported)] = errors.of(MessageNotSerializable)
    assert reported[0]["event"] == "E"
    assert offline.stats().refused == 1


def test_message_over_32_kb_is_reported_and_not_built(offline: Client, errors: Errors) -> None:
    with capture(offline) as messages:
        offline.track("u", "E", {"blob": "x" * 33_000})
        offline.track("u", "E", {"blob": "x" * 31_000})
    assert len(messages) == 1
    [(error, _)] = errors.of(MessageTooLarge)
    assert isinstance(error, MessageTooLarge)
    assert error.size > 32 * 1024 - 512


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.track(event="E"),
        lambda c: c.track("u", None),
        lambda c: c.track("u", 42),
        lambda c: c.identify(),
        lambda c: c.group("u"),
        lambda c: c.alias("only-previous"),
        lambda c: c.page(user_id=""),
        lambda c: c.track("u", "E", properties=["not", "a", "dict"]),
        lambda c: c.track("u", "E", context="nope"),
        lambda c: c.track(object(), "E"),
        lambda c: c.track("u", "E", timestamp=object()),
    ],
)
def test_invalid_calls_are_refused_and_reported(
    offline: Client, errors: Errors, call: Callable[[Client], bool]
) -> None:
    with capture(offline) as messages:
        call(offline)
    assert messages == []
    assert len(errors.seen) == 1
    assert offline.stats().refused == 1
