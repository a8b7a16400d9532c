"""The collector's own ASGI endpoint (cairn.web.collector.CollectorEndpoint), at the ASGI level:
bodies in pieces, bodies over the limit however they arrive, clients that leave, paths it must
leave to Litestar, and one unexpected failure that must cost only its own request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cairn.app import CairnApp
from tests.support.collector import App, running_app, track


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with running_app(tmp_path / "data", source_cache_seconds=0) as running:
        yield running


def _scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("203.0.113.9", 5000),
        "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


def _call(
    app: App, path: str, pieces: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight through the application's ASGI entry point; what it sent back."""
    asgi = app.client.app
    assert isinstance(asgi, CairnApp)
    sent: list[dict[str, Any]] = []
    queue = list(pieces)

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with app.client.portal() as portal:
        portal.call(asgi, _scope(path, headers), receive, send)
    if not sent:
        return 0, {}, b""
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def _key(app: App) -> list[tuple[bytes, bytes]]:
    return [(b"x-write-key", app.write_key.encode()), (b"origin", b"https://shop.example")]


def test_a_body_in_many_pieces_is_read_whole(app: App) -> None:
    body = json.dumps({"batch": [track(messageId=f"m{i}") for i in range(50)]}).encode()
    pieces = [
        {"type": "http.request", "body": body[i : i + 100], "more_body": i + 100 < len(body)}
        for i in range(0, len(body), 100)
    ]
    status, headers, answer = _call(app, "/v1/batch/", pieces, _key(app))
    assert (status, json.loads(answer)) == (200, {"success": True})
    assert headers[b"access-control-allow-origin"] == b"https://shop.example"
    assert headers[b"content-type"] == b"application/json"
    assert len(app.events()) == 50


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_refused_however_it_arrives(app: App, declared: bool) -> None:
    limit = app.runtime.settings.max_request_bytes * 2
    piece = b" " * 65536
    count = limit // len(piece) + 2
    pieces = [{"type": "http.request", "body": piece, "more_body": True} for _ in range(count)]
    headers = _key(app)
    if declared:
        headers.append((b"content-length", str(count * len(piece)).encode()))
    status, _, answer = _call(app, "/v1/batch", pieces, headers)
    assert status == 413
    assert json.loads(answer)["code"] == "request_too_large"
    assert app.batch([track(messageId="after")]).status_code == 200
    assert [e["messageId"] for e in app.events()] == ["after"]


def test_a_client_that_leaves_mid_body_costs_nothing(app: App) -> None:
    body = json.dumps({"batch": [track(messageId="half")]}).encode()
    pieces = [{"type": "http.request", "body": body[:20], "more_body": True}]  # then disconnect
    assert _call(app, "/v1/batch", pieces, _key(app)) == (0, {}, b"")
    assert app.events() == []
    assert app.batch([track(messageId="after")]).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/batch"), ("POST", "/v1/m"), ("POST", "/v1/batchx")]
)
def test_what_is_not_a_message_post_goes_to_litestar(app: App, method: str, path: str) -> None:
    asgi = app.client.app
    assert isinstance(asgi, CairnApp)
    assert asgi.collector_endpoint is not None
    assert not asgi.collector_endpoint.handles(_scope(path, [], method))
    answer = app.client.request(method, path, content=b"{}")
    assert answer.status_code in (200, 404, 405)  # Litestar's own answers


def test_an_unexpected_failure_is_a_500_for_that_request_only(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = app.runtime.collector
    real = collector.collect
    calls = 0

    async def flaky(request: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return await real(request)

    monkeypatch.setattr(collector, "collect", flaky)
    first = app.batch([track(messageId="lost-to-the-bug")])
    assert first.status_code == 500
    assert first.json() == {"code": "internal_error", "message": "internal server error"}
    assert app.batch([track(messageId="next")]).status_code == 200
    assert [e["messageId"] for e in app.events()] == ["next"]
