"""The one place exceptions become HTTP answers: `{"code": ..., "message": ...}` for every error."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from cairn.errors import CairnError, NotFound, Overloaded, StorageError
from cairn.ids import parse_int

__all__ = ["EXCEPTION_HANDLERS", "INTERNAL_ERROR", "error_parts", "error_response", "path_id"]

log = logging.getLogger(__name__)

INTERNAL_ERROR = {"code": "internal_error", "message": "internal server error"}
"""The answer to anything unexpected: logged, never detailed to the client."""

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "overloaded",
}


def path_id(raw: str, missing: str) -> int:
    """The numeric id in a URL path (persons, segments: 64-bit); anything else answers 404 with
    `missing`, formatted with `raw`."""
    found = parse_int(raw)
    if found is None:
        raise NotFound(missing.format(raw=raw))
    return found


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[Any]:
    return Response(
        {"code": code, "message": message, **(extra or {})},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def error_parts(exc: CairnError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """A Cairn error's answer: status, JSON body and headers (also for the collector's own ASGI
    endpoint, which answers without Litestar: cairn.web.collector)."""
    if isinstance(exc, StorageError):
        log.error("storage error: %s", exc.message)
        return 503, {"code": exc.code, "message": exc.message}, {"Retry-After": "1"}
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(exc.retry_after)}
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    # Errors that know where (a condition's text position, a JSON location) say so.
    if getattr(exc, "position", None) is not None:
        body["position"] = exc.position  # type: ignore[attr-defined]
    if getattr(exc, "at", None):
        body["at"] = exc.at  # type: ignore[attr-defined]
    return exc.status, body, headers


def _cairn_error(_: Request[Any, Any, Any], exc: CairnError) -> Response[Any]:
    status, body, headers = error_parts(exc)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "error" if status < 500 else "internal_error")
    message = exc.detail or code.replace("_", " ")
    extra = getattr(exc, "extra", None)
    if status == 400 and extra:
        message = f"{message}: {extra}"
    return error_response(status, code, str(message), getattr(exc, "headers", None))


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unexpected error", exc_info=exc)
    return error_response(
        HTTP_500_INTERNAL_SERVER_ERROR, INTERNAL_ERROR["code"], INTERNAL_ERROR["message"]
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    CairnError: _cairn_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
