"""cairn.js, Cairn's browser SDK, in Debian's Chromium against a real `cairn serve` (docs/sdk-js.md).

The customer's site (one loopback port) pastes the snippet from `sdks/js/snippet.js`; the snippet
loads cairn.js from Cairn's `/static/` (another port), so every request to Cairn is cross-origin,
as in production. What Cairn stores must be what the browser sent, with the server's fields
added; and every event must arrive exactly once through an offline spell, a server outage, a
reload during the outage, and the page going away.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

ROOT = Path(__file__).parents[2]
ASSETS = Path(__file__).parent / "assets"
SDK_VERSION = json.loads((ROOT / "sdks/js/package.json").read_text())["version"]
SNIPPET = (ROOT / "sdks/js/snippet.js").read_text()
PLACEHOLDER = '"WRITE_KEY",{host:"https://cairn.example.com"}'
TITLE = "Cairn SDK test page"

# The site's page: the snippet as documented, its write key and options from `window.__cairn`
# (set by the test before the page's scripts run), a tracked button, a link away, a long body.
APP_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{TITLE}</title>
  <link rel="icon" href="data:,">
  <script>{SNIPPET.replace(PLACEHOLDER, "window.__cairn.writeKey,window.__cairn.options")}</script>
</head>
<body>
  <h1>{TITLE}</h1>
  <button id="choose" data-cairn-track="Plan Selected" data-cairn-prop-plan-name="Pro"
          data-cairn-prop-seats="3">Choose</button>
  <a id="leave" href="/goodbye">Leave</a>
  <div style="height: 4000px"></div>
</body>
</html>
"""
GOODBYE = '<!doctype html><title>Goodbye</title><link rel="icon" href="data:,"><p>No SDK here.</p>'

USER_ID = "user-42"
TRAITS = {"email": "ada@example.com", "first_name": "Ada", "plan": "pro"}
USER_HASH = "5f1c0ad2" * 8  # what the site's server computed; Cairn keeps it in context
EVENT = "Order Completed"
PROPERTIES = {"order_id": "o-1", "total": 42.5, "currency": "EUR", "products": [{"sku": "b-1"}]}

# What the page itself says about the browser, to compare with the context cairn.js sent.
BROWSER_FACTS = """() => ({
  cookies: Object.fromEntries(document.cookie.split("; ").filter(Boolean).map((c) => c.split("="))),
  storage: Object.fromEntries(Object.entries(localStorage)),
  userAgent: navigator.userAgent,
  userAgentData: navigator.userAgentData && {
    brands: navigator.userAgentData.brands,
    mobile: navigator.userAgentData.mobile,
    platform: navigator.userAgentData.platform,
  },
  locale: navigator.language,
  timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
  screen: { width: screen.width, height: screen.height, density: devicePixelRatio },
})"""
# Notes in localStorage (which outlives the page) how each request to Cairn left: a request made
# while the page goes away is gone from Playwright's view with the page.
RECORD_SENDS = """(() => {
  const note = (how) => localStorage.setItem("test_sends",
    JSON.stringify([...JSON.parse(localStorage.getItem("test_sends") || "[]"), how]));
  const beacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, body) => (note("beacon"), beacon(url, body));
  const fetch = window.fetch;
  window.fetch = (url, init) => (note(init && init.keepalive ? "keepalive" : "fetch"), fetch(url, init));
})()"""
SAVED_QUEUE = """() => Object.keys(localStorage).filter((key) => key.startsWith("cairn_queue:"))
  .flatMap((key) => JSON.parse(localStorage.getItem(key)).q)"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The customer's site: cairn.js pages under /app/, a page without it, analytics.js pages."""
    with serve_site(ASSETS, {"/app/": APP_PAGE, "/goodbye": GOODBYE}) as origin:
        yield origin


@dataclass
class Visitor:
    """One browser profile (its cookies and localStorage) on the site: what it sent to Cairn's
    `/v1/batch` (with the request's resource type: "ping" for a beacon), and what went wrong."""

    context: Any
    server: ServerProcess
    batches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    preflights: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_request(self, request: Any) -> None:
        self.urls.append(request.url)
        if request.method == "POST" and request.url == self.server.url + "/v1/batch":
            self.batches.append((request.resource_type, json.loads(request.post_data)))
            self.headers.append(request.headers)

    def on_request_failed(self, request: Any) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def on_cdp_request(self, event: dict[str, Any]) -> None:
        if event["request"]["method"] == "OPTIONS":
            self.preflights.append(event["request"]["url"])

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"page error: {error}")

    def on_console(self, message: Any) -> None:
        # a refused connection while Cairn is down is logged by the browser, not by cairn.js
        if message.type == "error" and "ERR_" not in message.text:
            self.errors.append(f"console: {message.text}")

    def open(self, url: str, *, ready: str = "window.cairn && window.cairn.initialized") -> Any:
        """A new tab at `url`, once the library in it has loaded."""
        page = self.context.new_page()
        page.on("pageerror", self.on_page_error)
        page.on("console", self.on_console)
        cdp = self.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self.on_cdp_request)
        page.goto(url)
        page.wait_for_function(ready)
        return page

    def sent(self) -> list[dict[str, Any]]:
        """Every message sent, in order, with the batch around it (repeats included)."""
        return [{**item, "_batch": body} for _, body in self.batches for item in body["batch"]]


@contextmanager
def visiting(browser: Any, server: ServerProcess, **options: Any) -> Iterator[Visitor]:
    """A fresh browser profile whose pages load cairn.js with `options` (docs/sdk-js.md)."""
    context = browser.new_context()
    # index.html (analytics.js) reads writeKey, cdn, loadOptions; the /app/ pages writeKey, options.
    config = {
        "writeKey": server.write_key,
        "cdn": server.url,
        "loadOptions": {},
        "options": {"host": server.url, **options},
    }
    context.add_init_script(f"window.__cairn = {json.dumps(config)};")
    visitor = Visitor(context, server)
    context.on("request", visitor.on_request)
    context.on("requestfailed", visitor.on_request_failed)
    try:
        yield visitor
    finally:
        context.close()


def wait_for_events(server: ServerProcess, count: int, visitor: Visitor) -> list[dict[str, Any]]:
    """Cairn's stored events, oldest first, once there are `count`; no messageId twice."""
    deadline = time.monotonic() + 40
    while len(events := server.events()) < count:
        if time.monotonic() > deadline:
            pytest.fail(
                f"Cairn stored {len(events)} of {count} events; the browser sent "
                f"{[m.get('event') or m['type'] for m in visitor.sent()]}; errors {visitor.errors}"
                "\n" + "".join(server.output[-30:])
            )
        time.sleep(0.2)
    time.sleep(0.5)  # anything sent twice would be stored by now: check that nothing was
    events = server.events()
    by_message_id(events)
    assert len(events) == count, [event.get("event") or event["type"] for event in events]
    return sorted(events, key=lambda event: event["seq"])


def assert_stored_as_sent_by_browser(
    visitor: Visitor, stored: list[dict[str, Any]], window: Window
) -> None:
    """Each stored event is the copy the browser sent that Cairn kept (a repeat has a later
    sentAt), with the server's fields."""
    copies = visitor.sent()
    for event in stored:
        (message,) = [
            copy
            for copy in copies
            if copy["messageId"] == event["messageId"]
            and copy["_batch"]["sentAt"] == event["sentAt"]
        ]
        message = dict(message)
        batch = message.pop("_batch")
        assert_stored_as_sent(
            message,
            event,
            window=window,
            envelope=batch,
            channel="browser",
            added_context={"ip": LOOPBACK},
        )


def test_page_identify_and_track_with_utm(browser: Any, site: str, server: ServerProcess) -> None:
    """The automatic page view, identify with a user_hash, track: full context on each, stored
    as sent, from simple cross-origin requests (no preflight, the write key in the body)."""
    window = Window()
    with visiting(browser, server) as visitor:
        page = visitor.open(f"{site}/app/pricing{SEARCH}")
        page.evaluate(
            f"""async () => {{
              cairn.identify({json.dumps(USER_ID)}, {json.dumps(TRAITS)},
                             {{user_hash: {json.dumps(USER_HASH)}}});
              cairn.track({json.dumps(EVENT)}, {json.dumps(PROPERTIES)});
              await cairn.flush();
            }}"""
        )
        facts = page.evaluate(BROWSER_FACTS)
        stored = wait_for_events(server, 3, visitor)
    window.close()
    assert not visitor.errors, visitor.errors
    assert not visitor.failed, visitor.failed
    assert f"{server.url}/static/cairn.js" in visitor.urls
    assert {urlsplit(url).hostname for url in visitor.urls} == {LOOPBACK}
    assert not visitor.preflights, visitor.preflights
    for headers in visitor.headers:
        assert headers["content-type"].startswith("text/plain"), headers
        assert "authorization" not in headers
    assert all(body["writeKey"] == server.write_key for _, body in visitor.batches)
    assert_stored_as_sent_by_browser(visitor, stored, window)

    page_view, identify, track = stored
    assert [event["type"] for event in stored] == ["page", "identify", "track"]
    anonymous_id = facts["cookies"]["ajs_anonymous_id"]
    assert json.loads(facts["storage"]["ajs_anonymous_id"]) == anonymous_id
    assert facts["cookies"]["ajs_user_id"] == USER_ID
    assert json.loads(facts["storage"]["ajs_user_traits"]) == TRAITS
    assert {event["anonymousId"] for event in stored} == {anonymous_id}
    assert [event.get("userId") for event in stored] == [None, USER_ID, USER_ID]
    page_fields = {
        "path": "/app/pricing",
        "referrer": "",
        "search": SEARCH,
        "title": TITLE,
        "url": f"{site}/app/pricing{SEARCH}",
    }
    assert page_view["properties"] == page_fields
    assert identify["traits"] == TRAITS
    assert identify["context"]["user_hash"] == USER_HASH
    assert (track["event"], track["properties"]) == (EVENT, PROPERTIES)
    for event in stored:
        context = event["context"]
        assert context["page"] == page_fields
        assert context["campaign"] == CAMPAIGN
        assert context["library"] == {"name": "cairn.js", "version": SDK_VERSION}
        for name in ("userAgent", "userAgentData", "locale", "timezone", "screen"):
            assert context[name] == facts[name], name
        assert context["userAgentData"]["brands"], context["userAgentData"]
        assert window.contains(event["originalTimestamp"])


def test_identify_proves_the_user_with_user_hash(
    browser: Any, site: str, server: ServerProcess
) -> None:
    """On a source that requires identity verification, the identify whose user_hash (computed by
    the site's server) matches its userId is stored; one claiming another user is rejected."""
    with server.api() as api:
        sources = api.get("/api/v1/sources").json()["data"]
        (source,) = [s for s in sources if s["write_key"] == server.write_key]
        answer = api.post(f"/api/v1/sources/{source['id']}/identity-secret")
        secret = answer.json()["identity_secret"]
        api.patch(f"/api/v1/sources/{source['id']}", json={"require_user_hash": True})
    proof = hmac.new(secret.encode(), USER_ID.encode(), hashlib.sha256).hexdigest()
    with visiting(browser, server, page=False) as visitor:
        page = visitor.open(f"{site}/app/account")
        page.evaluate(
            f"""async () => {{
              cairn.identify("someone-else", {{}}, {{user_hash: {json.dumps(proof)}}});
              cairn.identify({json.dumps(USER_ID)}, {{}}, {{user_hash: {json.dumps(proof)}}});
              await cairn.flush();
            }}"""
        )
        (identify,) = wait_for_events(server, 1, visitor)
        with server.api() as api:
            rejected = api.get("/api/v1/rejected").json()["data"]
    assert (identify["userId"], identify["context"]["user_hash"]) == (USER_ID, proof)
    assert [entry["code"] for entry in rejected] == ["user_hash_invalid"]
    assert rejected[0]["body"]["userId"] == "someone-else"


def test_reset_on_logout(browser: Any, site: str, server: ServerProcess) -> None:
    """After reset the ids are gone from the cookies and localStorage; the next events come from
    a new anonymous visitor."""
    with visiting(browser, server, page=False) as visitor:
        page = visitor.open(f"{site}/app/account")
        page.evaluate(f"cairn.identify({json.dumps(USER_ID)}, {json.dumps(TRAITS)})")
        page.evaluate("cairn.group('acct-7', {name: 'Acme'})")
        page.evaluate(
            "async () => { cairn.reset(); cairn.track('Signed Out'); await cairn.flush() }"
        )
        facts = page.evaluate(BROWSER_FACTS)
        identify, group, signed_out = wait_for_events(server, 3, visitor)
    assert group["anonymousId"] == identify["anonymousId"]
    assert "userId" not in signed_out
    assert signed_out["anonymousId"] != identify["anonymousId"]
    assert "groupId" not in signed_out["context"]
    assert facts["cookies"]["ajs_anonymous_id"] == signed_out["anonymousId"]
    for name in ("ajs_user_id", "ajs_group_id"):
        assert name not in facts["cookies"], facts["cookies"]
    for name in ("ajs_user_id", "ajs_user_traits", "ajs_group_id", "ajs_group_properties"):
        assert name not in facts["storage"], facts["storage"]


def test_route_changes_clicks_and_scroll_depth(
    browser: Any, site: str, server: ServerProcess
) -> None:
    """A page view per SPA route change (pushState, popstate), `data-cairn-track` clicks and
    `Page Scrolled` at 25/50/75/100 once each per page view."""
    with visiting(browser, server, clicks=True, scrollDepth=True) as visitor:
        page = visitor.open(f"{site}/app/home")
        page.evaluate(
            "history.pushState({}, '', '/app/settings?tab=billing'); document.title = 'Settings'"
        )
        page.wait_for_timeout(300)  # the page view waits 50 ms for the route to settle
        page.click("#choose")
        for _ in range(2):  # down, up and down again: each mark still counts once
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_timeout(300)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
        page.go_back()
        page.wait_for_url(f"{site}/app/home")
        page.wait_for_timeout(300)
        page.evaluate("cairn.flush()")
        stored = wait_for_events(server, 8, visitor)
    assert not visitor.errors, visitor.errors
    names = [event.get("event") or f"page {event['context']['page']['path']}" for event in stored]
    assert names == [
        "page /app/home",
        "page /app/settings",
        "Plan Selected",
        *["Page Scrolled"] * 4,
        "page /app/home",
    ]
    _, settings, clicked, *scrolled, back = stored
    assert settings["properties"]["title"] == "Settings"
    assert settings["properties"]["search"] == "?tab=billing"
    assert settings["properties"]["referrer"] == f"{site}/app/home"
    assert back["properties"]["referrer"] == f"{site}/app/settings?tab=billing"
    assert clicked["properties"] == {"plan_name": "Pro", "seats": 3}
    assert clicked["context"]["page"]["path"] == "/app/settings"
    assert [event["properties"] for event in scrolled] == [{"depth": d} for d in (25, 50, 75, 100)]


def test_offline_then_online(browser: Any, site: str, server: ServerProcess) -> None:
    """Events made offline wait in localStorage and arrive once, with their own timestamps, when
    the browser is back online."""
    with visiting(browser, server) as visitor:
        page = visitor.open(f"{site}/app/pricing")
        wait_for_events(server, 1, visitor)
        visitor.context.set_offline(True)
        page.evaluate("async () => { for (const n of [1, 2, 3]) cairn.track('Offline ' + n) }")
        page.evaluate("cairn.flush()")
        page.wait_for_timeout(1500)
        saved = page.evaluate(SAVED_QUEUE)
        assert [message["event"] for message in saved] == ["Offline 1", "Offline 2", "Offline 3"]
        assert len(server.events()) == 1
        back_online = time.time() * 1000
        visitor.context.set_offline(False)
        stored = wait_for_events(server, 4, visitor)
        assert page.evaluate(SAVED_QUEUE) == []
    assert [event.get("event") for event in stored[1:]] == ["Offline 1", "Offline 2", "Offline 3"]
    by_id = {message["messageId"]: message for message in saved}
    for event in stored[1:]:
        assert event["originalTimestamp"] == by_id[event["messageId"]]["timestamp"]
        assert millis(event["originalTimestamp"]) < back_online - 1000 < millis(event["sentAt"])


def test_server_outage_and_a_reload_during_it(
    browser: Any, site: str, server: ServerProcess
) -> None:
    """Cairn goes down; the page keeps retrying with backoff; the visitor moves to another page
    of the site meanwhile, which takes the saved queue over; Cairn comes back: everything
    arrives, once."""
    with visiting(browser, server) as visitor:
        page = visitor.open(f"{site}/app/cart")
        wait_for_events(server, 1, visitor)
        server.stop()
        page.evaluate("cairn.track('Checkout Started', {cart_id: 'c-1'})")
        page.wait_for_timeout(2500)  # the first attempts fail
        attempts = [m for m in visitor.sent() if m.get("event") == "Checkout Started"]
        assert len(attempts) >= 2, visitor.sent()
        page.goto(f"{site}/app/checkout")  # a reload while Cairn is down
        page.wait_for_function("window.cairn && window.cairn.initialized")
        page.wait_for_timeout(1000)
        server.start()
        stored = wait_for_events(server, 3, visitor)
    paths = [event["context"]["page"]["path"] for event in stored]
    assert [event.get("event") or event["type"] for event in stored] == [
        "page",
        "Checkout Started",
        "page",
    ]
    assert paths == ["/app/cart", "/app/cart", "/app/checkout"]
    checkout = next(event for event in stored if event.get("event") == "Checkout Started")
    assert checkout["properties"] == {"cart_id": "c-1"}
    assert checkout["originalTimestamp"] == attempts[0]["timestamp"]
    assert {event["anonymousId"] for event in stored} == {stored[0]["anonymousId"]}


def test_a_429_is_retried_after_its_retry_after(
    browser: Any, site: str, server: ServerProcess
) -> None:
    """Cairn says 429 with `Retry-After: 3`, exposed to the script by CORS: cairn.js sends nothing
    for 3 s, then the same messages again, stored once."""
    attempts: list[float] = []

    def overloaded_once(route: Any) -> None:
        attempts.append(time.monotonic())
        if len(attempts) > 1:
            route.continue_()
            return
        headers = {
            "Retry-After": "3",
            "Access-Control-Allow-Origin": site,
            "Access-Control-Expose-Headers": "Retry-After",
            "Content-Type": "application/json",
        }
        route.fulfill(status=429, headers=headers, body='{"code":"overloaded","message":"x"}')

    with visiting(browser, server, page=False) as visitor:
        visitor.context.route(f"{server.url}/v1/batch", overloaded_once)
        page = visitor.open(f"{site}/app/pricing")
        page.evaluate("cairn.track('Report Exported')")
        page.wait_for_timeout(1500)
        page.evaluate("cairn.track('Report Shared'); cairn.flush()")  # waits out the 429 too
        # waiting in the page lets Playwright run the route handler for the next attempt
        page.wait_for_function("cairn.pending === 0", polling=100, timeout=15_000)
        (exported, shared) = wait_for_events(server, 2, visitor)
    assert len(attempts) == 2, attempts
    assert attempts[1] - attempts[0] >= 3
    first, second = (body["batch"] for _, body in visitor.batches)
    assert [m["event"] for m in first] == ["Report Exported"]
    assert [m["event"] for m in second] == ["Report Exported", "Report Shared"]
    assert first[0] == second[0]  # the same messageId and timestamp
    assert (exported["event"], shared["event"]) == ("Report Exported", "Report Shared")


@pytest.mark.parametrize("leave", ["link", "close"])
def test_unload_sends_what_is_queued(
    browser: Any, site: str, server: ServerProcess, leave: str
) -> None:
    """With nothing sent yet (a long flush interval), leaving the page (a link to a page without
    cairn.js, or closing the tab) sends the queue as a beacon on `pagehide`."""
    with visiting(browser, server, flushInterval=60_000, flushAt=100) as visitor:
        visitor.context.add_init_script(RECORD_SENDS)
        page = visitor.open(f"{site}/app/checkout")
        page.evaluate("cairn.track('Checkout Started', {order_id: 'o-9'})")
        page.wait_for_timeout(300)
        assert visitor.batches == []
        if leave == "link":
            page.click("#leave")
            page.wait_for_url(f"{site}/goodbye")
        else:
            page.close(run_before_unload=True)
        stored = wait_for_events(server, 2, visitor)
        sends = visitor.open(f"{site}/goodbye", ready="true").evaluate(
            "JSON.parse(localStorage.getItem('test_sends'))"
        )
    assert [event.get("event") or event["type"] for event in stored] == [
        "page",
        "Checkout Started",
    ]
    assert sends == ["beacon"]


def test_switching_from_analytics_js_keeps_the_visitor(
    browser: Any, site: str, server: ServerProcess
) -> None:
    """A visitor known to analytics.js (analytics-next) is the same visitor to cairn.js on the
    next page, and to analytics.js again after that: the ids live under the same names."""
    ready = "window.analytics && window.analytics.initialized === true"
    with visiting(browser, server) as visitor:
        before = visitor.open(f"{site}/index.html", ready=ready)
        before.evaluate(f"analytics.identify({json.dumps(USER_ID)}, {json.dumps(TRAITS)})")
        ajs_page, ajs_identify = wait_for_events(server, 2, visitor)
        after = visitor.open(f"{site}/app/pricing")
        ids = after.evaluate("[cairn.anonymousId(), cairn.userId(), cairn.traits()]")
        after.evaluate("cairn.flush()")
        cairn_page = wait_for_events(server, 3, visitor)[2]
        again = visitor.open(f"{site}/index.html", ready=ready)
        ajs_ids = again.evaluate("[analytics.user().anonymousId(), analytics.user().id()]")
    anonymous_id = ajs_page["anonymousId"]
    assert ajs_page["context"]["library"]["name"] == "analytics.js"
    assert ajs_identify["userId"] == USER_ID
    assert ids == [anonymous_id, USER_ID, TRAITS]
    assert cairn_page["context"]["library"]["name"] == "cairn.js"
    assert (cairn_page["anonymousId"], cairn_page["userId"]) == (anonymous_id, USER_ID)
    assert ajs_ids == [anonymous_id, USER_ID]
