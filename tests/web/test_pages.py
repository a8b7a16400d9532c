"""The login form and the live debugger's pages and htmx fragments (cairn.web.pages)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from cairn.app import build_app, open_runtime
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.settings import Settings
from cairn.storage.base import Storage
from cairn.web.api import SESSION_COOKIE
from cairn.web.pages import _clock
from cairn.workspaces import bootstrap, create_source, create_token


@dataclass
class Site:
    client: TestClient[Any]
    storage: Storage
    token: str
    write_key: str

    def login(self, token: str | None = None) -> None:
        answer = self.client.post("/login", data={"token": token or self.token})
        assert answer.status_code == 200, answer.text  # followed the redirect to the debugger

    def send(self, *messages: dict[str, Any], write_key: str | None = None) -> None:
        answer = self.client.post(
            "/v1/batch", json={"batch": list(messages)}, auth=(write_key or self.write_key, "")
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = Settings(data_dir=tmp_path)
    runtime = open_runtime(settings)
    first = bootstrap(runtime.storage)
    assert first is not None
    with TestClient(build_app(settings, runtime)) as client:
        yield Site(client, runtime.storage, first.token, first.source.write_key)


def track(event: str, user: str = "user_1", **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": user, "properties": properties}


def seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]


def signed_out(site: Site) -> None:
    site.client.cookies.clear()


# ---- login and logout ---------------------------------------------------------------------


def test_signed_out_root_is_the_login_form(site: Site) -> None:
    page = site.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'action="/login"' in page.text
    assert "Live debugger" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_login_sets_a_strict_httponly_session_cookie(site: Site) -> None:
    answer = site.client.post("/login", data={"token": site.token}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={site.token};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    page = site.client.get("/")
    assert "Live debugger" in page.text
    assert "default" in page.text  # the workspace's name


@pytest.mark.parametrize(
    ("token", "error"), [("cairn_not_a_token", "not valid"), ("", "Enter your admin token")]
)
def test_a_wrong_token_shows_the_form_again_with_401(site: Site, token: str, error: str) -> None:
    answer = site.client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 401
    assert error in answer.text
    assert 'action="/login"' in answer.text
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    "headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}]
)
def test_a_cross_site_login_is_refused(site: Site, headers: dict[str, str]) -> None:
    answer = site.client.post(
        "/login", data={"token": site.token}, headers=headers, follow_redirects=False
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_a_same_origin_login_is_accepted(site: Site) -> None:
    headers = {"Origin": "http://testserver.local", "Sec-Fetch-Site": "same-origin"}
    answer = site.client.post(
        "/login", data={"token": site.token}, headers=headers, follow_redirects=False
    )
    assert answer.status_code == 303


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_logout_clears_the_cookie(site: Site, method: str) -> None:
    site.login()
    answer = site.client.request(method, "/logout", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    assert answer.headers["set-cookie"].startswith(f'{SESSION_COOKIE}="";')
    assert 'action="/login"' in site.client.get("/").text


def test_a_stale_cookie_is_cleared_and_explained(site: Site) -> None:
    site.client.cookies.set(SESSION_COOKIE, "cairn_deleted_token")
    page = site.client.get("/")
    assert page.status_code == 200
    assert "session has ended" in page.text
    assert page.headers["set-cookie"].startswith(f'{SESSION_COOKIE}="";')


# ---- authentication of pages and fragments ------------------------------------------------


def test_pages_redirect_to_the_login_form(site: Site) -> None:
    answer = site.client.get("/rejected", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


@pytest.mark.parametrize(
    "path",
    [
        "/debugger/events?after=0",
        "/debugger/events?before=10",
        "/debugger/rejected?after=0",
        "/debugger/counts?seq=0&rid=0",
    ],
)
def test_fragments_answer_401_json_when_signed_out(site: Site, path: str) -> None:
    site.client.cookies.set(SESSION_COOKIE, "cairn_wrong")
    answer = site.client.get(path)
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_token"


def test_fragments_accept_a_bearer_header(site: Site) -> None:
    site.send(track("Signed Up"))
    headers = {"Authorization": f"Bearer {site.token}"}
    answer = site.client.get("/debugger/events?after=0", headers=headers)
    assert answer.status_code == 200
    assert "Signed Up" in answer.text


# ---- the events tab -----------------------------------------------------------------------


def test_rows_show_time_type_name_user_and_source_newest_first(site: Site) -> None:
    site.send(
        track("Order Completed", total=42),
        {"type": "page", "name": "Pricing", "anonymousId": "anon_7"},
        {"type": "identify", "userId": "user_2", "traits": {"email": "a@b.c", "plan": "pro"}},
    )
    site.login()
    page = site.client.get("/").text
    assert seqs(page) == [3, 2, 1]
    rows = page[page.index('id="event-list"') :]
    assert rows.index("email, plan") < rows.index("Pricing") < rows.index("Order Completed")
    assert 'class="type type-page"' in page
    assert 'class="cell-user is-anonymous"' in page
    assert ">anon_7<" in page
    assert 'class="cell-source">default<' in page
    assert re.search(r"<time datetime=\"\d{4}-\d\d-\d\dT[\d:.]+Z\"", page)
    assert "&#34;total&#34;: 42" in page  # the full message, pretty-printed
    assert "Waiting for your first event" in page  # rendered, hidden by CSS once rows exist


def test_the_poll_fragment_returns_only_newer_rows(site: Site) -> None:
    site.login()
    site.send(track("First"))
    first = site.client.get("/debugger/events?after=0")
    assert first.status_code == 200
    assert seqs(first.text) == [1]
    assert 'hx-swap-oob="true"' in first.text
    assert 'hx-get="/debugger/events?after=1"' in first.text
    assert site.client.get("/debugger/events?after=1").status_code == 204
    site.send(track("Second"), track("Third"))
    later = site.client.get("/debugger/events?after=1")
    assert seqs(later.text) == [3, 2]
    assert "First" not in later.text
    assert 'hx-get="/debugger/events?after=3"' in later.text


def test_the_page_polls_from_its_newest_row(site: Site) -> None:
    site.send(track("A"), track("B"))
    site.login()
    page = site.client.get("/").text
    assert 'id="events-poller"' in page
    assert 'hx-get="/debugger/events?after=2"' in page
    assert 'hx-trigger="every 1s"' in page


def test_filters_apply_on_the_server(site: Site) -> None:
    site.send(
        track("Order Completed"),
        track("Signed Up"),
        {"type": "page", "name": "Home", "userId": "u"},
    )
    site.login()
    by_type = site.client.get("/", params={"type": "page"}).text
    assert seqs(by_type) == [3]
    assert '<option value="page" selected>' in by_type
    by_name = site.client.get("/", params={"event": " Signed Up "}).text
    assert seqs(by_name) == [2]
    assert 'hx-get="/debugger/events?event=Signed+Up&amp;after=2"' in by_name
    both = site.client.get("/", params={"type": "track", "event": "Home"}).text
    assert seqs(both) == []
    assert "No events match these filters" in both
    unknown = site.client.get("/", params={"type": "bogus"}).text
    assert seqs(unknown) == [3, 2, 1]


def test_the_poll_fragment_keeps_the_filters(site: Site) -> None:
    site.login()
    site.send(track("Order Completed"), track("Signed Up"), {"type": "page", "userId": "u"})
    polled = site.client.get("/debugger/events", params={"after": 0, "type": "track"})
    assert seqs(polled.text) == [2, 1]
    assert 'hx-get="/debugger/events?type=track&amp;after=2"' in polled.text
    named = site.client.get("/debugger/events", params={"after": 0, "event": "Signed Up"})
    assert seqs(named.text) == [2]


def test_a_filtered_poll_moves_its_cursor_past_events_that_do_not_match(site: Site) -> None:
    site.login()
    site.send(track("Signed Up"))
    assert site.client.get("/debugger/events?after=1&type=page").status_code == 204
    site.send(track("Order Completed"), track("Order Completed"))
    polled = site.client.get("/debugger/events?after=1&type=page")
    assert polled.status_code == 200
    assert seqs(polled.text) == []
    assert 'hx-get="/debugger/events?type=page&amp;after=3"' in polled.text


def test_message_content_is_escaped_never_markup(site: Site) -> None:
    payload = "<script>alert('x')</script>"
    site.send(track(f"Bad {payload}", user='"><img src=x onerror=alert(1)>', note=payload))
    site.login()
    for html in (site.client.get("/").text, site.client.get("/debugger/events?after=0").text):
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_older_events_load_a_page_at_a_time(site: Site) -> None:
    site.send(*[track(f"Event {n}") for n in range(55)])
    site.login()
    page = site.client.get("/").text
    assert seqs(page) == list(range(55, 5, -1))
    assert 'hx-get="/debugger/events?before=6"' in page
    older = site.client.get("/debugger/events?before=6")
    assert seqs(older.text) == [5, 4, 3, 2, 1]
    assert "Load older" not in older.text


def test_the_empty_state_shows_a_curl_command_with_the_write_key(site: Site) -> None:
    site.login()
    page = site.client.get("/").text
    assert seqs(page) == []
    assert "Waiting for your first event" in page
    assert "curl http://testserver.local/v1/track" in page
    assert f"-u '{site.write_key}:'" in page


def test_times_show_the_date_only_when_it_is_not_today() -> None:
    now = format_ms(now_ms())
    assert _clock(now) == now[11:23]
    assert _clock(f"{int(now[:4]) - 1}-11-28T13:08:01.677Z").endswith("-11-28 13:08")
    assert _clock(now[:5] + ("01-01" if now[5:10] != "01-01" else "01-02") + now[10:]).startswith(
        "Jan 0"
    )


# ---- the rejected tab and the counts ------------------------------------------------------


def test_rejected_messages_show_code_reason_and_body(site: Site) -> None:
    site.send({"type": "track", "userId": "u1", "properties": {"x": "<b>bold</b>"}})
    site.login()
    page = site.client.get("/rejected").text
    assert 'aria-current="page">\n    Rejected' in page or 'is-active" href="/rejected"' in page
    assert ">missing_event<" in page
    assert "track needs an event name" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<b>bold</b>" not in page
    assert 'hx-get="/debugger/rejected?after=1"' in page


def test_the_rejected_poll_returns_only_newer_rejections(site: Site) -> None:
    site.login()
    assert site.client.get("/debugger/rejected?after=0").status_code == 204
    site.send({"type": "track", "userId": "u1"}, {"type": "group", "userId": "u1"})
    polled = site.client.get("/debugger/rejected?after=0").text
    assert polled.index("missing_group_id") < polled.index("missing_event")
    assert 'hx-get="/debugger/rejected?after=2"' in polled
    assert "missing_event" not in site.client.get("/debugger/rejected?after=1").text


def test_an_empty_rejected_tab_says_so(site: Site) -> None:
    site.login()
    assert "Nothing rejected" in site.client.get("/rejected").text


def test_counts_refresh_only_when_something_arrived(site: Site) -> None:
    site.login()
    page = site.client.get("/").text
    assert 'hx-get="/debugger/counts?seq=0&amp;rid=0&amp;tab=events"' in page
    assert site.client.get("/debugger/counts?seq=0&rid=0&tab=events").status_code == 204
    site.send(track("A"), track("B"), {"type": "track", "userId": "u"})
    counts = site.client.get("/debugger/counts?seq=0&rid=0&tab=events")
    assert counts.status_code == 200
    assert re.search(r'id="event-count">2<', counts.text)
    assert re.search(r'id="rejected-count">1<', counts.text)
    assert 'hx-get="/debugger/counts?seq=2&amp;rid=1&amp;tab=events"' in counts.text


# ---- workspaces ---------------------------------------------------------------------------


def test_a_token_only_ever_sees_its_own_workspace(site: Site) -> None:
    other = site.storage.create_workspace("other")
    other_key = create_source(site.storage, other, "web").write_key
    _, other_token = create_token(site.storage, other)
    site.send(track("Secret of A"), {"type": "track", "userId": "a"})
    site.send(track("Only in B"), write_key=other_key)

    site.login(other_token)
    page = site.client.get("/").text
    assert "Only in B" in page
    assert "Secret of A" not in page
    assert other_key in page
    assert site.write_key not in page
    assert "Secret of A" not in site.client.get("/debugger/events?after=0").text
    assert site.client.get("/debugger/rejected?after=0").status_code == 204
    assert "missing_event" not in site.client.get("/rejected").text
    counts = site.client.get("/debugger/counts").text
    assert re.search(r'id="event-count">1<', counts)
    assert re.search(r'id="rejected-count">0<', counts)

    site.login()
    assert "Only in B" not in site.client.get("/").text


# ---- static files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("htmx.min.js", "javascript"),
        ("debugger.js", "javascript"),
        ("cairn.js", "javascript"),
        ("cairn.css", "text/css"),
    ],
)
def test_static_files_are_served_from_the_package(site: Site, name: str, kind: str) -> None:
    answer = site.client.get(f"/static/{name}")
    assert answer.status_code == 200
    assert kind in answer.headers["content-type"]
    assert "max-age" in answer.headers["cache-control"]
