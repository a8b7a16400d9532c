"""Real client libraries from PyPI, unmodified, against a real `cairn serve` on each backend.

What is stored must equal what was sent, field by field, with the clock-skew correction of
PROTOCOL.md ("Per-message processing at the collector").
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from tests.support.collector import (
    Window,
    assert_stored_as_sent,
    basic,
    by_message_id,
    iso,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

ClientFactory = Callable[..., Any]
LIBRARIES = {
    "segment-analytics-python": SegmentClient,
    "rudder-sdk-python": RudderClient,
}


def _six_calls(client: Any, tag: str) -> list[dict[str, Any]]:
    """Every call a server-side library makes, with odd but valid data; the messages as built."""
    user, past = f"{tag}-user", datetime.now(UTC) - timedelta(hours=2)
    results = [
        client.identify(
            user_id=user,
            anonymous_id=f"{tag}-anon",
            traits={"email": "ada@example.com", "firstName": "Ada", "address": {"city": "Paris"}},
            context={"ip": "203.0.113.7", "locale": "fr-FR"},
        ),
        client.track(
            user_id=user,
            event="Order Completed",
            properties={
                "revenue": 12.5,
                "currency": "EUR",
                "products": [{"sku": "a-1", "price": 3, "quantity": 2}],
                "note": "caf\u00e9 \U0001f600 \u05e9\u05dc\u05d5\u05dd",
                "big": 123456789012345678901234567890,
                "nothing": None,
            },
            context={"groupId": "acme"},
            integrations={"Amplitude": False},
            timestamp=past,
        ),
        client.page(
            user_id=user, category="Docs", name="Install", properties={"path": "/docs/install"}
        ),
        client.screen(anonymous_id=f"{tag}-anon", name="Home", properties={"tab": 1}),
        client.group(user_id=user, group_id="acme", traits={"name": "Acme", "plan": "pro"}),
        client.alias(previous_id=f"{tag}-anon", user_id=user, message_id=f"{tag}-alias-1"),
        client.track(
            user_id=42, anonymous_id=7.0, event="Signed In"
        ),  # ids the library stringifies
    ]
    assert all(ok for ok, _ in results)
    return [msg for _, msg in results]


def _assert_all_stored(
    server: ServerProcess, sent: list[dict[str, Any]], window: Window
) -> dict[str, dict[str, Any]]:
    stored = by_message_id(server.events())
    for message in sent:
        event = stored[message["messageId"]]
        assert window.contains(event["sentAt"]), event["sentAt"]
        assert_stored_as_sent(message, event, window=window, envelope={"sentAt": event["sentAt"]})
    return stored


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_client_library_events_are_stored_as_sent(any_server: ServerProcess, library: str) -> None:
    make = LIBRARIES[library]
    errors: list[Any] = []
    window = Window()
    queued = make(
        any_server.write_key,
        host=any_server.url,
        gzip=True,
        sync_mode=False,
        on_error=lambda exc, batch: errors.append(exc),
        max_retries=1,
    )
    sent = _six_calls(queued, "async")
    queued.flush()
    queued.shutdown()
    blocking = make(any_server.write_key, host=any_server.url, gzip=True, sync_mode=True)
    sent += _six_calls(blocking, "sync")
    window.close()

    assert errors == []
    stored = _assert_all_stored(any_server, sent, window)
    assert len(stored) == len(sent)


# --- raw HTTP: every path, every way to authenticate -----------------------------------------

SINGLE_PATHS = [
    ("identify", "/v1/identify"),
    ("track", "/v1/track"),
    ("page", "/v1/page"),
    ("screen", "/v1/screen"),
    ("group", "/v1/group"),
    ("alias", "/v1/alias"),
    ("identify", "/v1/i"),
    ("track", "/v1/t"),
    ("page", "/v1/p"),
    ("screen", "/v1/s"),
    ("group", "/v1/g"),
    ("alias", "/v1/a"),
]


def _message(kind: str, n: int) -> dict[str, Any]:
    """A valid message of `kind`, with the fields that kind carries and nulls a client may send."""
    base: dict[str, Any] = {
        "messageId": f"raw-{kind}-{n}-{uuid.uuid4().hex[:8]}",
        "userId": f"user-{n}",
        "anonymousId": None,
        "context": {"locale": "de-DE", "library": {"name": "raw-httpx", "version": "1"}},
    }
    extra: dict[str, Any] = {
        "identify": {"traits": {"email": f"u{n}@example.com", "plan": None}},
        "track": {"event": "Product Viewed", "properties": {"sku": "x", "price": 9.99}},
        "page": {"name": "Pricing", "category": "Marketing", "properties": {"path": "/p"}},
        "screen": {"name": "Settings", "properties": {}},
        "group": {"groupId": f"acct-{n}", "traits": {"name": "Acme"}},
        "alias": {"previousId": f"anon-{n}"},
    }[kind]
    return {**base, **extra}


def _auth_variants(key: str) -> list[tuple[str, dict[str, str], bool]]:
    """(name, headers, key in body) for every way PROTOCOL.md lets a write key arrive."""
    return [
        ("body", {}, True),
        ("basic", basic(key), False),
        ("basic-no-colon", basic(key, colon=False), False),
        ("x-write-key", {"X-Write-Key": key}, False),
    ]


def test_every_single_message_path_and_auth(any_server: ServerProcess) -> None:
    sent: list[tuple[dict[str, Any], str, str, dict[str, Any] | None]] = []
    window = Window()
    with httpx.Client(base_url=any_server.url, timeout=30) as http:
        for n, (kind, path) in enumerate(SINGLE_PATHS):
            for auth_name, headers, in_body in _auth_variants(any_server.write_key):
                message = _message(kind, n)
                message["type"] = "screen" if kind != "screen" else "page"  # the path wins
                body = {**message, **({"writeKey": any_server.write_key} if in_body else {})}
                answer = http.post(path, json=body, headers=headers)
                assert (answer.status_code, answer.json()) == (200, {"success": True}), (
                    path,
                    auth_name,
                    answer.text,
                )
                sent.append((message, kind, "server", None))
    window.close()
    stored = by_message_id(any_server.events())
    assert len(stored) == len(sent)
    for message, kind, channel, added in sent:
        assert_stored_as_sent(
            message,
            stored[message["messageId"]],
            window=window,
            message_type=kind,
            channel=channel,
            added_context=added,
        )


def _skewed_batch(tag: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Six items and their envelope from a client whose clock runs an hour ahead."""
    ahead = timedelta(hours=1)
    kinds = ["identify", "track", "page", "screen", "group", "alias"]
    items = [{**_message(kind, n), "type": kind} for n, kind in enumerate(kinds)]
    for item in items:
        item["messageId"] = f"{tag}-{item['messageId']}"
    items[1]["timestamp"] = iso(offset=ahead - timedelta(seconds=3))
    items[1]["context"] = {"locale": "en-GB", "page": {"path": "/cart"}}
    items[1]["integrations"] = {"Mixpanel": True, "All": False}
    items[2]["timestamp"] = iso(offset=ahead - timedelta(minutes=5), z=False)
    items[3]["timestamp"] = "2024-02-29T23:59:59.123456+02:00"
    items[3]["sentAt"] = "2024-02-29T23:59:59.999+02:00"  # an item's own sentAt wins
    items[4]["timestamp"] = "2024-02-29T21:59:59Z"
    items[0]["userId"] = 12345
    items[4]["groupId"] = 987.0
    items[5]["previousId"] = 55
    envelope = {
        "context": {"library": {"name": "batch-lib"}, "app": {"name": "Shop", "build": "7"}},
        "integrations": {"All": True, "Slack": False},
        "sentAt": iso(offset=ahead),
    }
    return items, envelope


def test_batch_paths_merge_context_and_correct_skew(any_server: ServerProcess) -> None:
    sent: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
    window = Window()
    for path in ["/v1/batch", "/v1/import", "/v1/b"]:
        items, envelope = _skewed_batch(path.rsplit("/", 1)[1])
        answer = httpx.post(
            any_server.url + path,
            content=gzip.compress(json.dumps({"batch": items, **envelope}).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                     **basic(any_server.write_key)},
        )  # fmt: skip
        assert (answer.status_code, answer.json()) == (200, {"success": True}), path
        sent.append((items, envelope))
    window.close()
    stored = by_message_id(any_server.events())
    assert len(stored) == 3 * 6
    for items, envelope in sent:
        for item in items:
            assert_stored_as_sent(item, stored[item["messageId"]], window=window, envelope=envelope)
        assert stored[items[0]["messageId"]]["userId"] == "12345"
        assert stored[items[4]["messageId"]]["groupId"] == "987"
        assert stored[items[5]["messageId"]]["previousId"] == "55"
        assert stored[items[0]["messageId"]]["context"] == {
            "locale": "de-DE",
            "library": {"name": "raw-httpx", "version": "1"},
            "app": {"name": "Shop", "build": "7"},
        }
        assert stored[items[1]["messageId"]]["context"]["library"] == {"name": "batch-lib"}
        assert stored[items[1]["messageId"]]["integrations"] == {
            "All": False,
            "Slack": False,
            "Mixpanel": True,
        }


def test_browser_traffic_as_analytics_js_sends_it(any_server: ServerProcess) -> None:
    """text/plain bodies with Basic auth, `userId: null` before identify, `_metadata`."""
    agent = "Mozilla/5.0 (X11; Linux x86_64) CairnTest/1.0"
    headers = {"Content-Type": "text/plain", "User-Agent": agent, "Origin": "https://shop.test",
               **basic(any_server.write_key)}  # fmt: skip
    sent = []
    window = Window()
    with httpx.Client(base_url=any_server.url, timeout=30) as http:
        for n, (kind, short) in enumerate([("page", "p"), ("track", "t"), ("identify", "i")]):
            message = _message(kind, n)
            message.update(
                userId=None if kind != "identify" else "u-browser",
                anonymousId="anon-browser",
                sentAt=iso(),
                timestamp=iso(offset=timedelta(milliseconds=-40)),
                writeKey=any_server.write_key,
                _metadata={"bundled": ["Segment.io"], "unbundled": []},
                integrations={},
            )
            answer = http.post(f"/v1/{short}", content=json.dumps(message), headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.headers["access-control-allow-origin"] == "https://shop.test"
            sent.append((message, kind))
        own_ip = _message("track", 9)
        own_ip.update(type="track", context={"ip": "0.0.0.0", "userAgent": "kept"})
        answer = http.post("/v1/b", content=json.dumps({"batch": [own_ip], "sentAt": iso(),
                           "writeKey": any_server.write_key}), headers=headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
    window.close()
    stored = by_message_id(any_server.events())
    for message, kind in sent:
        assert_stored_as_sent(
            message,
            stored[message["messageId"]],
            window=window,
            message_type=kind,
            channel="browser",
            added_context={"ip": "127.0.0.1", "userAgent": agent},
        )
    kept = stored[own_ip["messageId"]]
    assert kept["context"]["ip"] == "0.0.0.0"  # "do not record": never replaced
    assert kept["context"]["userAgent"] == "kept"
    assert kept["channel"] == "browser"
