"""The collector's HTTP surface: PROTOCOL.md's endpoints, thin over `cairn.ingest.collector`.

The message endpoints (`/v1/batch`, `/v1/track`, ...) are answered by `CollectorEndpoint`, a plain
ASGI application the app calls before Litestar routes anything (cairn.app): ingest is the one path
where the framework's per-request work showed in profiles. Their Litestar route stays, for the
OpenAPI schema and for anything the endpoint passes on; both call `Collector.collect` the same way.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter
from litestar.types import Receive, Scope, Send

from cairn.errors import CairnError, PayloadTooLarge
from cairn.ids import parse_int
from cairn.ingest.collector import Collector, IncomingRequest
from cairn.ingest.messages import MESSAGE_TYPES, SHORT_TYPES
from cairn.settings import Settings
from cairn.web.cors import cors_headers
from cairn.web.errors import INTERNAL_ERROR, error_parts

__all__ = ["CollectorEndpoint", "collector_routes"]

log = logging.getLogger(__name__)

_OK = b'{"success":true}'
_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b")
_ROUTES: dict[str, str | None] = {f"/v1/{t}": t for t in MESSAGE_TYPES}
_ROUTES.update({f"/v1/{short}": t for short, t in SHORT_TYPES.items()})
_ROUTES.update(dict.fromkeys(_BATCH_PATHS))
_encode = msgspec.json.encode
_INTERNAL_ERROR = msgspec.json.encode(INTERNAL_ERROR)


def client_ip(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    host = request.client.host if request.client else None
    return _client_ip(request.headers, host, settings)


def _client_ip(headers: Mapping[str, str], peer: str | None, settings: Settings) -> str | None:
    if settings.trusted_proxy_header:
        forwarded = headers.get(settings.trusted_proxy_header.lower(), "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return peer


def _incoming(
    path: str, body: bytes, headers: Mapping[str, str], peer: str | None, settings: Settings
) -> IncomingRequest:
    """A message endpoint's request for `Collector.collect` (both routes to it build it here)."""
    path = path.rstrip("/")
    return IncomingRequest(
        body=body,
        headers=headers,
        client_ip=_client_ip(headers, peer, settings),
        batch=path in _BATCH_PATHS,
        message_type=_ROUTES.get(path),
    )


def _answer(answer: dict[str, Any]) -> bytes:
    return _OK if len(answer) == 1 else _encode(answer)


class CollectorEndpoint:
    """POSTs to the message endpoints, as a plain ASGI application: the body read up to the limit,
    `Collector.collect`, and the answer with the `/v1` CORS headers, errors as `error_parts` says.
    What it does not handle (`handles` is false) goes to Litestar."""

    def __init__(self, collector: Collector, settings: Settings) -> None:
        self._collector = collector
        self._settings = settings
        # As Litestar's own limit was: gzip bodies may be up to twice the inflated limit on the
        # wire; the collector checks the inflated size itself.
        self._limit = settings.max_request_bytes * 2

    @staticmethod
    def handles(scope: Any) -> bool:
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and (scope["path"].rstrip("/") or "/") in _ROUTES
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        response_headers = cors_headers(headers.get("origin", "*").encode("latin-1"))
        try:
            body = await self._body(receive, headers)
            if body is None:
                return  # the client went away before it sent its body
            client = scope.get("client")
            peer = client[0] if client else None
            incoming = _incoming(scope["path"], body, headers, peer, self._settings)
            status, content = 200, _answer(await self._collector.collect(incoming))
        except CairnError as exc:
            status, error, extra = error_parts(exc)
            content = _encode(error)
            for header, text in (extra or {}).items():
                response_headers.append((header.lower().encode(), text.encode()))
        except Exception:  # as Litestar's last handler does: logged, a 500 without details
            log.exception("unexpected error")
            status, content = 500, _INTERNAL_ERROR
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    *response_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _body(self, receive: Receive, headers: Mapping[str, str]) -> bytes | None:
        limit = self._limit
        declared = parse_int(headers.get("content-length", ""))
        if declared is not None and declared > limit:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def collector_routes(collector: Collector, settings: Settings) -> list[HTTPRouteHandler]:
    @post(
        list(_ROUTES),
        status_code=200,
        summary="Segment-compatible collector: one message, or a batch",
        description="See docs/ingest.md. Answers exactly 200 with {success: true} and any "
        "per-message rejections.",
        tags=["collector"],
        include_in_schema=True,
    )
    async def collect(request: Request[Any, Any, Any]) -> Response[bytes]:
        peer = request.client.host if request.client else None
        incoming = _incoming(
            request.url.path, await request.body(), request.headers, peer, settings
        )
        content = _answer(await collector.collect(incoming))
        return Response(content, status_code=200, media_type=MediaType.JSON)

    @post("/v1/m", status_code=200, tags=["collector"], summary="analytics.js metrics (ignored)")
    async def metrics() -> Response[bytes]:
        return Response(_OK, status_code=200, media_type=MediaType.JSON)

    @get("/v1/pixel/{kind:str}", tags=["collector"], summary="Tracking pixel; always a 1x1 GIF")
    async def pixel(
        request: Request[Any, Any, Any],
        kind: FromPath[str],
        payload: Annotated[str, QueryParameter(name="data")] = "",
    ) -> Response[bytes]:
        await _pixel(collector, settings, request, kind, payload)
        return Response(
            _GIF, media_type="image/gif", headers={"Cache-Control": "no-store, max-age=0"}
        )

    @get(
        "/v1/projects/{write_key:str}/settings", tags=["collector"], summary="analytics.js settings"
    )
    async def project_settings(
        request: Request[Any, Any, Any], write_key: FromPath[str]
    ) -> dict[str, Any]:
        await collector.source_by_key(write_key)
        return analytics_js_settings(request, settings, write_key)

    return [collect, metrics, pixel, project_settings]


async def _pixel(
    collector: Collector, settings: Settings, request: Request[Any, Any, Any], kind: str, data: str
) -> None:
    message_type = _ROUTES.get(f"/v1/{kind}")
    if message_type is None:
        return
    try:
        padded = data + "=" * (-len(data) % 4)
        body = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        incoming = IncomingRequest(
            body=body,
            headers=request.headers,
            client_ip=client_ip(request, settings),
            batch=False,
            message_type=message_type,
        )
        await collector.collect(incoming)
    except (CairnError, binascii.Error, ValueError) as exc:
        log.info("pixel request dropped: %s", exc)


def analytics_js_settings(
    request: Request[Any, Any, Any], settings: Settings, write_key: str
) -> dict[str, Any]:
    """What analytics.js loads before it sends anything: where to send, and no Segment metrics."""
    base = settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
    scheme, _, host = base.partition("://")
    api_host = f"{host.rstrip('/')}/v1"
    segment = {
        "apiKey": write_key,
        "apiHost": api_host,
        "protocol": scheme,
        "unbundledIntegrations": [],
    }
    return {
        "integrations": {"Segment.io": segment},
        "plan": {
            "track": {"__default": {"enabled": True}},
            "identify": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
        "apiHost": api_host,
        "protocol": scheme,
    }
