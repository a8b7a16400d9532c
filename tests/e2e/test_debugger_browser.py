"""The live debugger in Debian's Chromium against a real `cairn serve`: sign in, watch an event
arrive without a reload, open it, and find a rejected message under its tab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium
from tests.support.server import ServerProcess

SCREENSHOT = Path("/tmp/debugger.png")
HOSTILE = "<script>alert('xss')</script><img src=x onerror=alert(1)>"

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def page() -> Iterator[Any]:
    """A Chromium tab (see tests/support/browser.py)."""
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 860})


def _send(server: ServerProcess, message: dict[str, Any]) -> None:
    answer = httpx.post(server.url + "/v1/track", json=message, auth=(server.write_key, ""))
    assert answer.status_code == 200, answer.text


def test_events_and_rejections_arrive_live(server: ServerProcess, page: Any) -> None:
    problems: list[str] = []
    page.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))

    page.goto(server.url + "/")
    page.fill("#token", "cairn_not_the_token")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-error")
    problems.clear()  # the browser logs that 401 answer as a console error; it was expected
    page.fill("#token", server.token)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Live debugger')")
    assert page.is_visible("text=Waiting for your first event")
    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page

    _send(server, {"userId": "user_42", "event": "Order Completed",
                   "properties": {"total": 42, "note": HOSTILE}})  # fmt: skip
    row = page.wait_for_selector("#event-list .entry:has-text('Order Completed')", timeout=10_000)
    assert "user_42" in row.inner_text()
    assert page.evaluate("window.stillTheSamePage") is True
    assert not page.is_visible("text=Waiting for your first event")
    row.click()
    json_text = page.wait_for_selector("#event-list .entry[open] pre.json").inner_text()
    assert '"total": 42' in json_text
    assert HOSTILE in json_text  # shown as text, never run as markup
    assert page.query_selector("#event-list script, #event-list img") is None

    _send(server, {"userId": "user_42", "properties": {"why": "no event name"}})
    page.wait_for_selector("#rejected-count:has-text('1')", timeout=10_000)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.click("a.tab[href='/rejected']")
    rejected = page.wait_for_selector("#rejected-list .entry:has-text('missing_event')")
    assert "track needs an event name" in rejected.inner_text()
    _send(server, {"event": "Anonymous Nobody"})
    page.wait_for_selector("#rejected-list .entry:has-text('missing_id')", timeout=10_000)
    page.click("#rejected-list .entry:has-text('missing_id') summary")
    body = page.wait_for_selector("#rejected-list .entry[open] pre.json").inner_text()
    assert '"event": "Anonymous Nobody"' in body
    page.screenshot(path=str(SCREENSHOT.with_name("debugger-rejected.png")), full_page=True)
    assert problems == []
