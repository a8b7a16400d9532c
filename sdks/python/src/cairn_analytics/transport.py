"""The seam between the SDK and the network: one `post` per batch.

`HTTPTransport` keeps one keep-alive connection (http.client, standard library). Tests and users
with special needs pass their own object with the same two methods as `transport=`.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

__all__ = ["HTTPTransport", "Response", "Transport", "TransportError"]


class TransportError(Exception):
    """The request got no HTTP answer (refused, reset, timed out, DNS): always worth a retry."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


class Transport(Protocol):
    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST `body` to `path` on the host; raise `TransportError` when no answer came."""
        ...

    def close(self) -> None: ...


class HTTPTransport:
    """HTTP/1.1 to one host over a reused connection; reconnects once when a kept-alive
    connection turns out to have been closed by the server."""

    def __init__(self, host: str, timeout: float = 15.0) -> None:
        parts = urlsplit(host if "://" in host else f"http://{host}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"host must be an http(s) URL, got {host!r}")
        self._secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        reused = self._connection is not None
        try:
            return self._exchange(path, body, headers)
        except (OSError, http.client.HTTPException) as error:
            self.close()
            if not reused or isinstance(error, TimeoutError):
                raise TransportError(str(error) or type(error).__name__) from error
        try:  # the server may close an idle keep-alive connection at any time: one fresh try
            return self._exchange(path, body, headers)
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise TransportError(str(error) or type(error).__name__) from error

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _exchange(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        connection = self._connection or self._connect()
        connection.request("POST", self._prefix + path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        if answer.will_close:
            self.close()
        return Response(answer.status, data, {k.lower(): v for k, v in answer.getheaders()})

    def _connect(self) -> http.client.HTTPConnection:
        if self._secure:
            context = ssl.create_default_context()
            self._connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=context
            )
        else:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
        return self._connection
