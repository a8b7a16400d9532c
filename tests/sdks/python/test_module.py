"""The module-level API: analytics-python's names and arguments, the default client, capture."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
import segment.analytics
from segment.analytics.client import Client as SegmentClient

import cairn_analytics
from cairn_analytics import Client
from cairn_analytics.testing import capture

CALLS = ["track", "identify", "group", "alias", "page", "screen"]


@pytest.fixture(autouse=True)
def fresh_default() -> Iterator[None]:
    saved = {name: getattr(cairn_analytics, name) for name in ("write_key", "send", "host")}
    cairn_analytics.default_client = None
    yield
    cairn_analytics.shutdown(timeout=1)
    for name, value in saved.items():
        setattr(cairn_analytics, name, value)


@pytest.mark.parametrize("name", CALLS)
def test_calls_take_analytics_pythons_arguments(name: str) -> None:
    ours = list(inspect.signature(getattr(Client, name)).parameters)
    theirs = list(inspect.signature(getattr(SegmentClient, name)).parameters)
    assert ours == theirs
    module = list(inspect.signature(getattr(cairn_analytics, name)).parameters)
    assert module == theirs[1:]


def test_the_module_has_analytics_pythons_functions_and_settings() -> None:
    names = [*CALLS, "flush", "join", "shutdown", "write_key", "host", "on_error", "debug", "send",
             "sync_mode", "max_queue_size", "gzip", "timeout", "max_retries"]  # fmt: skip
    assert [n for n in names if not hasattr(segment.analytics, n)] == []
    assert [n for n in names if not hasattr(cairn_analytics, n)] == []


def test_client_options_share_analytics_pythons_names() -> None:
    ours = set(inspect.signature(Client).parameters)
    shared = {"write_key", "host", "debug", "max_queue_size", "send", "on_error", "gzip",
              "max_retries", "sync_mode", "timeout", "upload_size", "upload_interval",
              "log_handler"}  # fmt: skip
    assert shared <= ours
    assert shared <= set(inspect.signature(SegmentClient).parameters)


def test_capture_swaps_the_default_client() -> None:
    with capture() as messages:
        cairn_analytics.track("u_1", "Order Completed", {"total": 42.5})
        cairn_analytics.identify("u_1", {"plan": "pro"})
    assert [m["type"] for m in messages] == ["track", "identify"]
    assert messages[0]["properties"] == {"total": 42.5}
    assert cairn_analytics.default_client is None


def test_without_a_write_key_calls_do_not_raise() -> None:
    cairn_analytics.write_key = None
    assert cairn_analytics.track("u", "E") is True
    client = cairn_analytics.default_client
    assert client is not None
    assert client.send is False


def test_settings_reach_the_default_client() -> None:
    cairn_analytics.write_key = "wk"
    cairn_analytics.send = False
    cairn_analytics.page("u", name="Home")
    assert cairn_analytics.default_client is not None
    assert cairn_analytics.default_client.write_key == "wk"
    assert cairn_analytics.flush() is True
