"""The people pages in Debian's Chromium against a real `cairn serve`: sign in, search with a text
query, open the person, read the timeline, load more of it, and undo a merge."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium
from tests.support.server import ServerProcess

SCREENSHOTS = Path("/tmp")
HOSTILE = "<script>alert('xss')</script>"

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium() as browser:
        yield browser.new_page(viewport={"width": 1280, "height": 900})


def _journey(server: ServerProcess) -> None:
    """Ada browses anonymously, then logs in on that browser (a merge) and orders 40 times."""
    batch = [
        {"type": "page", "anonymousId": "browser-1", "name": "Pricing"},
        {"type": "track", "anonymousId": "browser-1", "event": "Plan Viewed"},
        {"type": "identify", "userId": "ada",
         "traits": {"name": "Ada Lovelace", "email": "ada@example.com", "plan": "pro",
                    "note": HOSTILE}},
        {"type": "identify", "userId": "ada", "anonymousId": "browser-1"},  # merges the visitor
        *[{"type": "track", "userId": "ada", "event": "Order Completed",
           "properties": {"total": 10 + n}} for n in range(40)],
        {"type": "identify", "userId": "bob", "traits": {"name": "Bob", "plan": "free"}},
    ]  # fmt: skip
    answer = httpx.post(
        server.url + "/v1/batch", json={"batch": batch}, auth=(server.write_key, "")
    )
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 20
    with server.api() as api:
        while api.get("/api/v1/pipeline").json()["lag_events"] > 0:
            assert time.monotonic() < deadline, "the pipeline did not catch up"
            time.sleep(0.1)


def test_search_open_a_person_read_the_timeline_and_undo_a_merge(
    server: ServerProcess, page: Any
) -> None:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    _journey(server)

    page.goto(server.url + "/")
    page.fill("#token", server.token)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Live debugger')")
    page.click(".topnav a[href='/people']")
    page.wait_for_selector("h1:has-text('People')")
    assert page.locator("#people-list .entry").count() == 2

    page.fill("#q", 'plan = "pro" and did "Order Completed" at least 3 times in last 30 days')
    page.click("form.search button[type=submit]")
    page.wait_for_selector("#result-summary:has-text('1 person matches')")
    assert page.locator("#people-list .entry").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "people-search.png"), full_page=True)

    page.click("#people-list .entry:has-text('Ada Lovelace')")
    page.wait_for_selector("#person-name:has-text('Ada Lovelace')")
    assert HOSTILE in page.inner_text("#traits")  # shown as text, never run
    assert page.query_selector("#traits script") is None
    assert page.locator("#timeline .entry").count() == 30
    page.click("#timeline .entry:has-text('Order Completed') summary")
    assert '"total": 49' in page.inner_text("#timeline .entry[open] pre.json")
    page.evaluate("window.stillTheSamePage = true")
    page.click("#timeline .load-more button")
    # (not wait_for_function: its polling evaluates a string, which the pages' CSP forbids)
    page.wait_for_selector("#timeline > details.entry:nth-of-type(31)")
    assert page.evaluate("window.stillTheSamePage") is True  # appended in place, no reload
    assert page.locator("#timeline .entry:has-text('Pricing')").count() == 1  # the oldest
    page.screenshot(path=str(SCREENSHOTS / "person.png"), full_page=True)

    assert "browser-1" in page.inner_text("#identifiers")
    page.click("#merges button:has-text('Undo merge')")
    page.wait_for_selector("#unmerged-notice")
    assert len(dialogs) == 1
    assert dialogs[0].startswith("Undo this merge?")
    assert "browser-1" not in page.inner_text("#identifiers")
    assert page.query_selector("#merges") is None
    page.screenshot(path=str(SCREENSHOTS / "person-unmerged.png"), full_page=True)

    page.click("#unmerged-notice a")
    page.wait_for_selector("#identifiers:has-text('browser-1')")
    assert page.locator("#timeline .entry:has-text('Pricing')").count() == 1
    assert problems == []
