"""Segment's own browser library, @segment/analytics-next, unmodified, in Debian's Chromium.

A page on one loopback port loads the library in one of the two ways customers do, with Cairn
(another port) as its CDN: the Segment snippet with the vendored standalone bundle and `_cdn`, or
the npm package's own bundle with `AnalyticsBrowser.load({writeKey, cdnURL})`. Every request is
cross-origin, so the browser really sends its CORS preflights. The library fetches its settings
from Cairn, sends the six calls there, and nothing may leave 127.0.0.1. What Cairn stores must be
what the browser sent, with the server's fields added (PROTOCOL.md, "What analytics.js needs to
run against Cairn").
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.browser import chromium
from tests.support.collector import Window, assert_stored_as_sent, by_message_id, millis
from tests.support.server import ServerProcess
from tests.support.site import CAMPAIGN, LOOPBACK, SEARCH, serve_site

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ASSETS = Path(__file__).parent / "assets"
ANALYTICS_NEXT_VERSION = "1.84.3"  # tests/e2e/assets/README.md

# The page that loads analytics-next: the snippet with the standalone bundle and `_cdn`, or the
# npm package's UMD bundle with `AnalyticsBrowser.load({writeKey, cdnURL})` (tests/e2e/assets).
PAGES = [
    pytest.param("index.html", id="snippet-cdn"),
    pytest.param("cdn-url.html", id="npm-cdnURL"),
]

TITLE = "Cairn analytics.js test page"

USER_ID = "user-42"
TRAITS = {
    "email": "ada@example.com",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "address": {"city": "London", "country": "GB"},
    "plan": "pro",
}
EVENT = "Product Added"
PROPERTIES = {
    "cart_id": "cart-9",
    "product_id": "p-1",
    "name": "Trail Boot",
    "price": 129.5,
    "quantity": 2,
    "currency": "EUR",
    "tags": ["outdoor", "boots"],
}
PAGE_CATEGORY, PAGE_NAME, PAGE_PROPERTIES = "Docs", "Getting Started", {"section": "intro"}
GROUP_ID = "acct-7"
GROUP_TRAITS = {"name": "Acme Inc", "industry": "Retail", "employees": 42, "plan": "enterprise"}

# The snippet's buffered `analytics.page()` (index.html), then these five, in this order. The
# visitor signs up: alias ties the anonymous visitor to the new userId before identify. (alias
# after identify sends the identified userId as both userId and previousId: analytics-next
# 1.84.3 overwrites `userId` with the current user's id on every event.)
CALLS = f"""async () => {{
  await analytics.alias({json.dumps(USER_ID)});
  await analytics.identify({json.dumps(USER_ID)}, {json.dumps(TRAITS)});
  await analytics.track({json.dumps(EVENT)}, {json.dumps(PROPERTIES)});
  await analytics.page({json.dumps(PAGE_CATEGORY)}, {json.dumps(PAGE_NAME)},
                       {json.dumps(PAGE_PROPERTIES)});
  await analytics.group({json.dumps(GROUP_ID)}, {json.dumps(GROUP_TRAITS)});
  return {{
    cookies: Object.fromEntries(document.cookie.split("; ").map((c) => c.split("="))),
    storage: Object.fromEntries(Object.entries(localStorage)),
    userAgent: navigator.userAgent,
  }};
}}"""
TYPES = ["page", "alias", "identify", "track", "page", "group"]
SHORT_PATHS = {f"/v1/{kind[0]}": kind for kind in ("identify", "track", "page", "group", "alias")}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """tests/e2e/assets over HTTP on its own loopback port: the customer's web site."""
    with serve_site(ASSETS) as origin:
        yield origin


@dataclass
class BrowserLog:
    """Everything the page asked the network for, seen by Playwright and by the DevTools protocol
    (which also reports CORS preflights), plus console errors and uncaught exceptions."""

    requests: list[Any] = field(default_factory=list)
    answers: dict[Any, tuple[int, dict[str, str]]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    cdp_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    cdp_responses: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    # Playwright wants Python functions as handlers, not builtins such as `list.append`.
    def on_request(self, request: Any) -> None:
        self.requests.append(request)

    def on_response(self, response: Any) -> None:
        self.answers[response.request] = (response.status, response.headers)

    def on_request_failed(self, request: Any) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def on_cdp_request(self, event: dict[str, Any]) -> None:
        self.cdp_requests[event["requestId"]] = event

    def on_cdp_response(self, event: dict[str, Any]) -> None:
        self.cdp_responses.append(event)

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"page error: {error}")

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def posts(self, origin: str) -> list[tuple[str, dict[str, Any]]]:
        """(path, JSON body) of every POST to `origin`, in the order the browser sent them."""
        found = []
        for request in self.requests:
            if request.method == "POST" and request.url.startswith(origin + "/"):
                body = request.post_data
                assert body is not None, request.url
                found.append((urlsplit(request.url).path, json.loads(body)))
        return found

    def urls(self) -> list[str]:
        seen = [request.url for request in self.requests]
        seen += [event["request"]["url"] for event in self.cdp_requests.values()]
        return [url for url in seen if not url.startswith("data:")]

    def preflights(self) -> dict[str, dict[str, Any]]:
        """The answer to each preflight, by URL."""
        by_id = {
            request_id: event
            for request_id, event in self.cdp_requests.items()
            if event["request"]["method"] == "OPTIONS"
        }
        answers: dict[str, dict[str, Any]] = {}
        for event in self.cdp_responses:
            if event.get("type") == "Preflight" or event["requestId"] in by_id:
                answers[event["response"]["url"]] = event["response"]
        return answers


def _run_calls(
    browser: Any, site: str, server: ServerProcess, load_options: dict[str, Any], page_name: str
) -> tuple[BrowserLog, dict[str, Any]]:
    """Load the page, make the six calls, wait until Cairn has stored them all."""
    log = BrowserLog()
    context = browser.new_context()
    # What the customer's page is configured with (index.html and cdn-url.html read it).
    config = {"writeKey": server.write_key, "cdn": server.url, "loadOptions": load_options}
    context.add_init_script(f"window.__cairn = {json.dumps(config)};")
    try:
        context.on("request", log.on_request)
        context.on("response", log.on_response)
        context.on("requestfailed", log.on_request_failed)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", log.on_cdp_request)
        cdp.on("Network.responseReceived", log.on_cdp_response)
        page.on("pageerror", log.on_page_error)
        page.on("console", log.on_console)
        page.goto(f"{site}/{page_name}{SEARCH}")
        page.wait_for_function("window.analytics && window.analytics.initialized === true")
        # The snippet's buffered page call first, so that the order of the calls is known.
        _wait_for_events(server, 1, log)
        seen = page.evaluate(CALLS)
        _wait_for_events(server, len(TYPES), log)
        page.close()
    finally:
        context.close()
    return log, seen


def _wait_for_events(server: ServerProcess, count: int, log: BrowserLog) -> None:
    deadline = time.monotonic() + 30
    while len(server.events()) < count:
        if time.monotonic() > deadline:
            sent = [request.url for request in log.requests if request.method == "POST"]
            pytest.fail(
                f"Cairn stored {len(server.events())} of {count} events; the browser posted "
                f"{sent}; errors {log.errors}; failed {log.failed}\n" + "".join(server.output[-40:])
            )
        time.sleep(0.2)


def _assert_browser_behaved(log: BrowserLog, server: ServerProcess, site: str) -> None:
    """Only loopback, no failed or refused request, no error on the page, preflights answered."""
    foreign = [url for url in log.urls() if urlsplit(url).hostname != LOOPBACK]
    assert not foreign, f"the browser went beyond {LOOPBACK}: {foreign}"
    assert not log.failed, f"failed requests: {log.failed}"
    assert not log.errors, f"page errors: {log.errors}"
    for request in log.requests:
        assert request in log.answers, f"no answer to {request.method} {request.url}"
        status, headers = log.answers[request]
        assert status == 200, f"{request.method} {request.url}: {status}"
        if request.url.startswith(server.url + "/v1/"):
            allowed = headers.get("access-control-allow-origin")
            assert allowed in (site, "*"), (request.url, headers)
    settings = [
        r for r in log.requests if r.url.endswith(f"/v1/projects/{server.write_key}/settings")
    ]
    assert len(settings) == 1, [r.url for r in log.requests]
    preflights = log.preflights()
    for url in {r.url for r in log.requests if r.method == "POST"}:
        answer = preflights.get(url)
        assert answer is not None, f"no CORS preflight seen for {url}: {sorted(preflights)}"
        headers = {name.lower(): value for name, value in answer["headers"].items()}
        assert 200 <= answer["status"] < 300, (url, answer["status"])
        assert "authorization" in headers.get("access-control-allow-headers", "").lower(), headers
        assert headers.get("access-control-allow-origin") in (site, "*"), headers


def _assert_stored(
    server: ServerProcess,
    sent: list[dict[str, Any]],
    seen: dict[str, Any],
    site: str,
    window: Window,
    page_name: str,
) -> list[dict[str, Any]]:
    """What Cairn kept, checked against the six calls; the stored events in call order."""
    stored = by_message_id(server.events())
    assert set(stored) == {message["messageId"] for message in sent}
    events = [stored[message["messageId"]] for message in sent]
    assert [event["type"] for event in events] == TYPES

    anonymous_id = seen["cookies"]["ajs_anonymous_id"]
    assert anonymous_id
    assert json.loads(seen["storage"]["ajs_anonymous_id"]) == anonymous_id
    assert seen["cookies"]["ajs_user_id"] == USER_ID
    assert {event["anonymousId"] for event in events} == {anonymous_id}
    assert [event.get("userId") for event in events] == [None, *[USER_ID] * 5]

    landing, alias, identify, track, page, group = events
    assert alias["previousId"] == anonymous_id
    assert identify["traits"] == TRAITS
    assert track["event"] == EVENT
    assert track["properties"] == PROPERTIES
    assert "traits" not in track
    url = f"{site}/{page_name}{SEARCH}"
    page_fields = {
        "path": f"/{page_name}",
        "referrer": "",
        "search": SEARCH,
        "title": TITLE,
        "url": url,
    }
    assert landing["properties"] == page_fields
    assert "name" not in landing
    assert (page["category"], page["name"]) == (PAGE_CATEGORY, PAGE_NAME)
    # analytics-next copies name and category into the properties, next to the page fields.
    named = {"name": PAGE_NAME, "category": PAGE_CATEGORY}
    assert page["properties"] == {**page_fields, **PAGE_PROPERTIES, **named}
    assert group["groupId"] == GROUP_ID
    assert group["traits"] == GROUP_TRAITS

    previous_ms = 0.0
    for event in events:
        context = event["context"]
        assert context["page"] == page_fields, context
        assert context["campaign"] == CAMPAIGN, context
        assert context["library"] == {
            "name": "analytics.js",
            "version": f"next-{ANALYTICS_NEXT_VERSION}",
        }
        assert context["userAgent"] == seen["userAgent"]
        assert context["ip"] == LOOPBACK
        assert event["channel"] == "browser"
        assert "writeKey" not in event
        assert "_metadata" not in event
        original = millis(event["originalTimestamp"])
        sent_at, received = millis(event["sentAt"]), millis(event["receivedAt"])
        assert window.contains(event["originalTimestamp"]), event["originalTimestamp"]
        assert previous_ms <= original <= sent_at <= received + 50, event
        assert abs(millis(event["timestamp"]) - (received - (sent_at - original))) <= 1, event
        previous_ms = original
    return events


@pytest.mark.parametrize("page_name", PAGES)
def test_analytics_js_one_request_per_call(
    browser: Any, site: str, server: ServerProcess, page_name: str
) -> None:
    """The default delivery: one POST per call to `/v1/{p,i,t,g,a}`, as text/plain with Basic."""
    window = Window()
    log, seen = _run_calls(browser, site, server, load_options={}, page_name=page_name)
    window.close()
    _assert_browser_behaved(log, server, site)

    posts = log.posts(server.url)
    assert [SHORT_PATHS.get(path) for path, _ in posts] == TYPES, [path for path, _ in posts]
    for request in log.requests:
        if request.method == "POST":
            assert request.headers["content-type"].startswith("text/plain")
            assert request.headers["authorization"].startswith("Basic ")
    sent = [body for _, body in posts]
    assert all(body["writeKey"] == server.write_key for body in sent)
    stored = _assert_stored(server, sent, seen, site, window, page_name)
    for (path, body), event in zip(posts, stored, strict=True):
        assert_stored_as_sent(
            body,
            event,
            window=window,
            message_type=SHORT_PATHS[path],
            channel="browser",
            added_context={"ip": LOOPBACK},
        )


@pytest.mark.parametrize("page_name", PAGES)
def test_analytics_js_batching(
    browser: Any, site: str, server: ServerProcess, page_name: str
) -> None:
    """`deliveryStrategy: batching`: `{batch, sentAt, writeKey}` to `/v1/b`, items without sentAt."""
    # Three events a batch: the six calls take at least two requests.
    delivery = {"strategy": "batching", "config": {"size": 3, "timeout": 300}}
    options = {"integrations": {"Segment.io": {"deliveryStrategy": delivery}}}
    window = Window()
    log, seen = _run_calls(browser, site, server, load_options=options, page_name=page_name)
    window.close()
    _assert_browser_behaved(log, server, site)

    posts = log.posts(server.url)
    assert len(posts) >= 2, posts
    assert {path for path, _ in posts} == {"/v1/b"}, [path for path, _ in posts]
    items: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for _, body in posts:
        assert set(body) == {"batch", "sentAt", "writeKey"}, body.keys()
        assert body["writeKey"] == server.write_key
        for item in body["batch"]:
            assert "sentAt" not in item
            items.append((item, body))
    sent = [item for item, _ in items]  # batches and their items in the order of the calls
    stored = _assert_stored(server, sent, seen, site, window, page_name)
    by_id = {event["messageId"]: event for event in stored}
    for item, body in items:
        event = by_id[item["messageId"]]
        assert event["sentAt"] == body["sentAt"]
        assert_stored_as_sent(
            item,
            event,
            window=window,
            envelope=body,
            channel="browser",
            added_context={"ip": LOOPBACK},
        )


def test_analytics_js_features_needing_more_bundles_fail_alone(
    browser: Any, site: str, server: ServerProcess
) -> None:
    """`ajs_` query parameters and trackLink make the standalone bundle load webpack chunks from
    `{_cdn}/analytics-next/bundles/`, which Cairn does not serve (assets/README.md, docs/sdk-js.md):
    those two features fail, and nothing else does: the calls around them still arrive."""
    log = BrowserLog()
    context = browser.new_context()
    config = {"writeKey": server.write_key, "cdn": server.url, "loadOptions": {}}
    context.add_init_script(f"window.__cairn = {json.dumps(config)};")
    try:
        context.on("request", log.on_request)
        page = context.new_page()
        page.goto(f"{site}/index.html?ajs_uid=from-an-email-link")
        page.wait_for_function("window.analytics && window.analytics.initialized === true")
        failure = page.evaluate(
            """async () => {
              const link = document.body.appendChild(document.createElement("a"));
              link.href = "#next";
              try { await analytics.trackLink(link, "Link Clicked"); } catch (e) { return String(e); }
              return null;
            }"""
        )
        page.evaluate("analytics.track('Plan Selected')")
        _wait_for_events(server, 2, log)
    finally:
        context.close()
    assert failure is not None
    assert "ChunkLoadError" in failure, failure
    bundles = [r.url for r in log.requests if "/analytics-next/bundles/" in r.url]
    assert bundles, "no chunk was requested: update assets/README.md and docs/sdk-js.md"
    assert all(url.startswith(f"{server.url}/analytics-next/bundles/") for url in bundles)
    # By type, not by seq: with several workers the two requests, in flight at once, may commit
    # in either order (the log's order is commit order).
    events = server.events()
    assert sorted(event["type"] for event in events) == ["page", "track"]
    landing, track = sorted(events, key=lambda event: event["type"])
    assert "userId" not in landing  # ajs_uid needed the query-string chunk
    assert track["event"] == "Plan Selected"
