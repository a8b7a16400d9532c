"""The collector's HTTP surface: PROTOCOL.md's endpoints, thin over `cairn.ingest.collector`."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter

from cairn.errors import CairnError
from cairn.ingest.collector import Collector, IncomingRequest
from cairn.ingest.messages import MESSAGE_TYPES, SHORT_TYPES
from cairn.settings import Settings

__all__ = ["collector_routes"]

log = logging.getLogger(__name__)

_OK = b'{"success":true}'
_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b")
_ROUTES: dict[str, str | None] = {f"/v1/{t}": t for t in MESSAGE_TYPES}
_ROUTES.update({f"/v1/{short}": t for short, t in SHORT_TYPES.items()})
_ROUTES.update(dict.fromkeys(_BATCH_PATHS))
_encode = msgspec.json.encode


def client_ip(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    if settings.trusted_proxy_header:
        forwarded = request.headers.get(settings.trusted_proxy_header.lower(), "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return request.client.host if request.client else None


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
        path = request.url.path.rstrip("/")
        incoming = IncomingRequest(
            body=await request.body(),
            headers=request.headers,
            client_ip=client_ip(request, settings),
            batch=path in _BATCH_PATHS,
            message_type=_ROUTES.get(path),
        )
        answer = await collector.collect(incoming)
        content = _OK if len(answer) == 1 else _encode(answer)
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
