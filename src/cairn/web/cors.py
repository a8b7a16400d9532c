"""CORS for the collector's `/v1` paths, as analytics.js needs it (PROTOCOL.md, "Request format").

`CollectorCORS` answers every preflight itself; `add_cors_headers` (an app-level before-send hook)
puts `Access-Control-Allow-Origin` on every `/v1` answer, errors and unknown routes included. The
requested headers are echoed because `*` does not cover `Authorization`.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CollectorCORS", "add_cors_headers", "cors_headers"]

_PREFIX = "/v1/"
_ALLOW_ORIGIN = b"access-control-allow-origin"


class CollectorCORS:
    """Answers `OPTIONS` on any `/v1` route before routing does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == ScopeType.HTTP
            and scope.get("method") == "OPTIONS"
            and scope["path"].startswith(_PREFIX)
        ):
            headers = _headers(scope)
            origin = headers.get(b"origin", b"*")
            await _preflight(send, origin, headers.get(b"access-control-request-headers"))
            return
        await self.app(scope, receive, send)


async def add_cors_headers(message: Message, scope: Scope) -> None:
    """Before-send hook: `Access-Control-Allow-Origin` on every `/v1` response."""
    if message["type"] != "http.response.start" or not scope["path"].startswith(_PREFIX):
        return
    present = list(message.get("headers") or [])
    if any(name.lower() == _ALLOW_ORIGIN for name, _ in present):
        return
    updated: Any = message
    updated["headers"] = [*present, *cors_headers(_headers(scope).get(b"origin", b"*"))]


def cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    """The headers every `/v1` answer carries for a request from `origin`."""
    # Browsers hide Retry-After from cross-origin scripts unless it is exposed (cairn.js honours it).
    return [
        (_ALLOW_ORIGIN, origin),
        (b"access-control-expose-headers", b"Retry-After"),
        (b"vary", b"Origin"),
    ]


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope["headers"]}


async def _preflight(send: Send, origin: bytes, requested: bytes | None) -> None:
    allow_headers = requested or b"authorization, content-type, content-encoding, x-write-key"
    headers: list[tuple[bytes, bytes]] = [
        (_ALLOW_ORIGIN, origin),
        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (b"access-control-allow-headers", allow_headers),
        (b"access-control-max-age", b"86400"),
        (b"vary", b"Origin, Access-Control-Request-Headers"),
        (b"content-length", b"0"),
    ]
    start: Any = {"type": "http.response.start", "status": 204, "headers": headers}
    await send(start)
    body: Any = {"type": "http.response.body", "body": b""}
    await send(body)
