"""Helpers for your own tests: see the messages your code would send, without a server.

from cairn_analytics.testing import capture

def test_checkout_tracks_the_order():
    with capture() as messages:
        checkout(cart)                      # calls cairn_analytics.track(...)
    assert messages[0]["event"] == "Order Completed"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cairn_analytics
from cairn_analytics.client import Client

__all__ = ["capture"]


@contextmanager
def capture(client: Client | None = None) -> Iterator[list[dict[str, Any]]]:
    """Collect every message built while the block runs, as the dicts that would be sent.

    Without `client`, the module-level functions (`cairn_analytics.track`, ...) go to a
    `Client(send=False)` for the duration of the block, and the previous default client is put
    back afterwards. With a `client`, its messages are collected as they are built: in the
    calling thread for `send=False` and `sync_mode` clients, in the SDK's thread otherwise (call
    `client.flush()` before looking). Refused calls are not collected; they go to `on_error`.
    """
    messages: list[dict[str, Any]] = []
    if client is not None:
        client._outbox.recorder = messages
        try:
            yield messages
        finally:
            client._outbox.recorder = None
        return
    previous = cairn_analytics.default_client
    cairn_analytics.default_client = Client(
        send=False, on_error=cairn_analytics.on_error, max_queue_size=1
    )
    cairn_analytics.default_client._outbox.recorder = messages
    try:
        yield messages
    finally:
        cairn_analytics.default_client.shutdown()
        cairn_analytics.default_client = previous
