"""Collector test helpers: what a stored event must look like, timestamps, an in-process app.

`assert_stored_as_sent` is the one definition of "stored equals sent" that the client, bad-input
and crash tests share. `running_app` is the real application behind Litestar's in-process test
client: no sockets, no subprocess, the same code path as `cairn serve`.
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from cairn.app import Runtime, build_app, open_runtime
from cairn.settings import Settings
from cairn.storage.base import Storage, open_storage
from cairn.workspaces import bootstrap

__all__ = [
    "SERVER_FIELDS",
    "App",
    "Window",
    "assert_error",
    "assert_stored_as_sent",
    "basic",
    "by_message_id",
    "deep_merge",
    "iso",
    "millis",
    "running_app",
    "storage_for",
    "track",
]

# What the collector adds to every stored message, beyond what the client sent.
SERVER_FIELDS = frozenset(
    {"receivedAt", "channel", "version", "sentAt", "seq", "sourceId", "originalTimestamp"}
)
_DROPPED = frozenset({"writeKey", "_metadata"})


def millis(text: str) -> float:
    """An ISO-8601 timestamp as milliseconds since the epoch, microseconds kept (independent of
    `cairn.ingest.timestamps`, so the tests do not check the parser with itself)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1)


def iso(moment: datetime | None = None, *, offset: timedelta = timedelta(0), z: bool = True) -> str:
    """`moment` (default: now) plus `offset`, as analytics.js (`...Z`) or analytics-python
    (`+00:00`) writes it, with milliseconds."""
    value = (moment or datetime.now(UTC)) + offset
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if z else text


def basic(key: str, *, colon: bool = True) -> dict[str, str]:
    """HTTP Basic with the write key as user name and an empty password."""
    credentials = f"{key}:" if colon else key
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def track(event: str = "Order Completed", user_id: str = "user-1", **fields: Any) -> dict[str, Any]:
    """A valid track message; `fields` add to or replace its keys."""
    return {"type": "track", "userId": user_id, "event": event, **fields}


def deep_merge(under: Mapping[str, Any] | None, over: Mapping[str, Any] | None) -> dict[str, Any]:
    """`over` on top of `under`, objects merged key by key (PROTOCOL.md: the item wins)."""
    merged = copy.deepcopy(dict(under or {}))
    for key, value in (over or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class Window:
    """The wall-clock span of a test's requests, in milliseconds, for checking `receivedAt`."""

    start_ms: float = field(default_factory=lambda: time.time() * 1000 - 1)
    end_ms: float = float("inf")

    def close(self) -> Window:
        self.end_ms = time.time() * 1000 + 1
        return self

    def contains(self, text: str) -> bool:
        return self.start_ms <= millis(text) <= self.end_ms


def by_message_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stored events by messageId; fails when any messageId is stored twice."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        message_id = event["messageId"]
        assert message_id not in found, f"messageId {message_id!r} stored twice"
        found[message_id] = event
    return found


def _expected_id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def assert_stored_as_sent(
    sent: Mapping[str, Any],
    stored: Mapping[str, Any],
    *,
    window: Window,
    envelope: Mapping[str, Any] | None = None,
    message_type: str | None = None,
    channel: str = "server",
    added_context: Mapping[str, Any] | None = None,
) -> None:
    """`stored` is `sent` as the collector must keep it, field by field (PROTOCOL.md).

    `envelope` is the batch around `sent` (its `context`, `integrations`, `sentAt`);
    `message_type` the type a single-message path imposes; `added_context` what the collector
    fills in for browser traffic (ip, userAgent).
    """
    envelope = envelope or {}
    given = {k: v for k, v in sent.items() if v is not None and k not in _DROPPED}
    expected: dict[str, Any] = {
        k: v for k, v in given.items() if k not in {"timestamp", "sentAt", "channel"}
    }
    if message_type is not None:
        expected["type"] = message_type
    for name in ("userId", "anonymousId", "groupId", "previousId"):
        if name in expected:
            expected[name] = _expected_id(expected[name])
    context = deep_merge(envelope.get("context"), given.get("context"))
    context = deep_merge(added_context, context)
    if context or "context" in given:
        expected["context"] = context
    integrations = deep_merge(envelope.get("integrations"), given.get("integrations"))
    if integrations or "integrations" in given:
        expected["integrations"] = integrations

    for name, value in expected.items():
        assert stored.get(name) == value, f"{name}: stored {stored.get(name)!r}, sent {value!r}"
    extra = set(stored) - set(expected) - SERVER_FIELDS - {"timestamp", "messageId"}
    assert not extra, f"stored fields nobody sent: {sorted(extra)}"
    assert all(stored[k] is not None for k in stored), "a null field was stored"
    assert stored["channel"] == channel
    assert stored["version"] == 2
    assert window.contains(stored["receivedAt"]), (stored["receivedAt"], window)
    if "messageId" not in expected:
        assert isinstance(stored["messageId"], str)
        assert stored["messageId"]
    _assert_timestamps(given, stored, envelope.get("sentAt"))


def _assert_timestamps(
    given: Mapping[str, Any], stored: Mapping[str, Any], batch_sent_at: str | None
) -> None:
    sent_at = given.get("sentAt", batch_sent_at)
    if sent_at is not None:
        assert stored["sentAt"] == sent_at
    else:
        assert "sentAt" not in stored
    received = millis(stored["receivedAt"])
    corrected = millis(stored["timestamp"])
    if "timestamp" not in given:
        assert stored["timestamp"] == stored["receivedAt"]
        assert "originalTimestamp" not in stored
        return
    assert stored["originalTimestamp"] == given["timestamp"]
    client = millis(given["timestamp"])
    want = client if sent_at is None else received - (millis(sent_at) - client)
    assert abs(corrected - want) <= 1.0, (
        f"timestamp {stored['timestamp']} should be {want} ms (sent {given['timestamp']}, "
        f"sentAt {sent_at}, receivedAt {stored['receivedAt']})"
    )


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """`response` is the one JSON error shape, `{"code", "message"}`, with `status`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["code"], str)
    assert body["code"]
    assert isinstance(body["message"], str)
    assert body["message"]
    if code is not None:
        assert body["code"] == code, body
    return dict(body)


@dataclass
class App:
    """The real application in process: its test client, runtime, write key and admin token."""

    client: TestClient[Any]
    runtime: Runtime
    write_key: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def batch(self, items: list[Any], key: str | None = None, **envelope: Any) -> Any:
        body = {"batch": items, "writeKey": key or self.write_key, **envelope}
        return self.client.post("/v1/batch", json=body)

    def events(self, token: str | None = None, **params: Any) -> list[dict[str, Any]]:
        return self._all("/api/v1/events", token, params)

    def rejected(self, token: str | None = None) -> list[dict[str, Any]]:
        return self._all("/api/v1/rejected", token, {})

    def _all(self, path: str, token: str | None, params: dict[str, Any]) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = self.client.get(path, params=query, headers=headers)
            assert page.status_code == 200, (path, page.status_code, page.text[:500])
            found += page.json()["data"]
            cursor = page.json()["next_cursor"]
            if not cursor:
                return found


@contextmanager
def running_app(data_dir: Path, **overrides: Any) -> Iterator[App]:
    """`cairn serve`'s application on SQLite in `data_dir`, bootstrapped, lifespan running."""
    settings = Settings(data_dir=data_dir, **overrides)
    runtime = open_runtime(settings)
    first = bootstrap(runtime.storage)
    assert first is not None
    with TestClient(build_app(settings, runtime)) as client:
        yield App(client, runtime, first.source.write_key, first.token)


def storage_for(data_dir: Path, database_url: str | None = None) -> Storage:
    """A second connection to a server's database (the test process's own, not the server's)."""
    return open_storage(database_url or f"sqlite:///{data_dir / 'cairn.db'}")
