"""CORS for the collector's `/v1` paths, as analytics.js needs it (PROTOCOL.md, "Request format").

Answers every preflight itself and puts `Access-Control-Allow-Origin` on every `/v1` answer,
errors included. The requested headers are echoed because `*` does not cover `Authorization`.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CollectorCORS"]

_PREFIX = "/v1/"


class CollectorCORS:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith(_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        origin = headers.get(b"origin", b"*")
        if scope.get("method") == "OPTIONS":
            await _preflight(send, origin, headers.get(b"access-control-request-headers"))
            return
        cors = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope["headers"]}


async def _preflight(send: Send, origin: bytes, requested: bytes | None) -> None:
    allow_headers = requested or b"authorization, content-type, content-encoding, x-write-key"
    headers: list[tuple[bytes, bytes]] = [
        (b"access-control-allow-origin", origin),
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
