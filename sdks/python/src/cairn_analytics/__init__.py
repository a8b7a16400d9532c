"""Cairn's Python server SDK, shaped like Segment's analytics-python.

    import cairn_analytics as analytics
    analytics.write_key = "..."
    analytics.host = "https://cairn.example.com"
    analytics.track("u_1", "Order Completed", {"total": 42.5})

The module-level functions go to a default `Client`, made on the first call from the settings
below. Set them before that call; `Client(...)` takes the same names as arguments.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from cairn_analytics.client import DEFAULT_HOST, Client, OnError, Stats
from cairn_analytics.errors import (
    CairnAnalyticsError,
    DeliveryFailed,
    EventsDropped,
    InvalidMessage,
    MessageNotSerializable,
    MessagesRejected,
    MessageTooLarge,
)
from cairn_analytics.version import VERSION

__version__ = VERSION
__all__ = [
    "CairnAnalyticsError",
    "Client",
    "DeliveryFailed",
    "EventsDropped",
    "InvalidMessage",
    "MessageNotSerializable",
    "MessageTooLarge",
    "MessagesRejected",
    "Stats",
    "alias",
    "flush",
    "group",
    "identify",
    "join",
    "page",
    "screen",
    "shutdown",
    "stats",
    "sync_spool",
    "track",
]

# Settings for the default client (the names and meanings of analytics-python's, plus the spool).
write_key: str | None = None
host: str = DEFAULT_HOST
on_error: OnError | None = None
debug: bool = False
log_handler: logging.Handler | None = None
send: bool = True
sync_mode: bool = False
max_queue_size: int = 100_000
gzip: bool = True
timeout: float = 15.0
max_retries: int = 10
upload_size: int = 500
upload_interval: float = 0.5
spool_dir: str | os.PathLike[str] | None = None
spool_max_bytes: int = 256 * 1024 * 1024
spool_fsync: bool = False
shutdown_timeout: float = 5.0

default_client: Client | None = None
_P = ParamSpec("_P")
_R = TypeVar("_R")
_log = logging.getLogger("cairn_analytics")


def _client() -> Client:
    global default_client
    if default_client is None:
        try:
            default_client = _configured_client(send)
        except ValueError as error:  # a missing write key must not crash the host program
            _log.error("cairn-analytics: %s; events are not sent", error)
            default_client = _configured_client(False)
    return default_client


def _configured_client(sending: bool) -> Client:
    return Client(
        write_key,
        host=host,
        debug=debug,
        max_queue_size=max_queue_size,
        send=sending,
        on_error=on_error,
        gzip=gzip,
        max_retries=max_retries,
        sync_mode=sync_mode,
        timeout=timeout,
        upload_size=upload_size,
        upload_interval=upload_interval,
        log_handler=log_handler,
        spool_dir=spool_dir if sending and not sync_mode else None,
        spool_max_bytes=spool_max_bytes,
        spool_fsync=spool_fsync,
        shutdown_timeout=shutdown_timeout,
    )


def _forward(method: Callable[Concatenate[Client, _P], _R]) -> Callable[_P, _R]:
    """`method` of the default client as a module-level function, with its signature."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(default_client or _client(), *args, **kwargs)

    signature = inspect.signature(method)
    parameters = list(signature.parameters.values())[1:]  # without `self`
    call.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return call


track = _forward(Client.track)
identify = _forward(Client.identify)
group = _forward(Client.group)
alias = _forward(Client.alias)
page = _forward(Client.page)
screen = _forward(Client.screen)


def flush(timeout: float | None = None) -> bool:
    """Wait until everything queued so far is delivered (see `Client.flush`)."""
    return default_client.flush(timeout) if default_client is not None else True


def sync_spool(timeout: float | None = None) -> bool:
    """Wait until everything queued so far is on disk (see `Client.sync_spool`)."""
    return default_client.sync_spool(timeout) if default_client is not None else True


def shutdown(timeout: float | None = None) -> None:
    """Send what is queued and stop the default client (see `Client.shutdown`)."""
    global default_client
    if default_client is not None:
        default_client.shutdown(timeout)
        default_client = None


def join() -> None:
    """analytics-python's name for `shutdown`."""
    shutdown()


def stats() -> Stats | None:
    """The default client's counters, or None before its first call."""
    return default_client.stats() if default_client is not None else None
