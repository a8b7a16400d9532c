"""The people, person, account and segment pages in-process (cairn.web.people_pages).

Data goes in through the collector; the pipeline and the segment engine are run by the test (the
app is built with `pipeline` off), so every page sees settled state.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from cairn.app import Runtime, build_app, open_runtime
from cairn.finder.segments import SegmentEngine
from cairn.settings import Settings
from cairn.web.api import SESSION_COOKIE
from cairn.workspaces import bootstrap, create_source, create_token

HOSTILE = "<script>alert('x')</script>"
HTMX = {"HX-Request": "true"}


@dataclass
class Site:
    client: TestClient[Any]
    runtime: Runtime
    token: str
    write_key: str

    def send(self, *messages: dict[str, Any], write_key: str | None = None) -> None:
        answer = self.client.post(
            "/v1/batch", json={"batch": list(messages)}, auth=(write_key or self.write_key, "")
        )
        assert answer.status_code == 200, answer.text
        self.settle()

    def settle(self) -> None:
        """Run the pipeline over the log, then the segment engine until it has nothing to do."""
        self.runtime.pipeline.run_until_idle()
        engine = SegmentEngine(self.runtime.pipeline.store)
        while engine.step():
            pass

    def login(self, token: str | None = None) -> None:
        answer = self.client.post("/login", data={"token": token or self.token})
        assert answer.status_code == 200, answer.text

    def person_id(self, user_id: str) -> int:
        answer = self.client.get("/people/lookup", params={"id": user_id}, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        return int(answer.headers["location"].rsplit("/", 1)[1])


SiteFactory = Callable[..., Site]


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[SiteFactory]:
    clients: list[TestClient[Any]] = []

    def make(**settings: Any) -> Site:
        config = Settings(data_dir=tmp_path / f"d{len(clients)}", pipeline=False, **settings)
        runtime = open_runtime(config)
        first = bootstrap(runtime.storage)
        assert first is not None
        client = TestClient(build_app(config, runtime)).__enter__()
        clients.append(client)
        made = Site(client, runtime, first.token, first.source.write_key)
        made.login()
        return made

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def site(make_site: SiteFactory) -> Site:
    return make_site()


def identify(user: str, anonymous: str | None = None, **traits: Any) -> dict[str, Any]:
    message = {"type": "identify", "userId": user, "traits": traits}
    return {**message, "anonymousId": anonymous} if anonymous else message


def track(event: str, user: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": user, "properties": properties}


def journey(site: Site) -> int:
    """Ada browses anonymously, signs up (a merge), joins Acme and orders three times."""
    site.send(
        {"type": "page", "anonymousId": "browser-1", "name": "Pricing"},
        {"type": "track", "anonymousId": "browser-1", "event": "Plan Viewed"},
        identify("ada", email="ada@example.com", plan="pro", name="Ada Lovelace"),
        identify("ada", "browser-1", first_name="Ada"),
        {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"name": "Acme Inc"}},
        *[track("Order Completed", "ada", revenue=10) for _ in range(3)],
        identify("bob", email="bob@example.com", plan="free"),
    )
    return site.person_id("ada")


def people_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-person="(\d+)"', html)]


def timeline_keys(html: str) -> list[str]:
    return re.findall(r'data-key="([eh]\d+)"', html)


# ---- sessions -----------------------------------------------------------------------------


PAGES = ["/people", "/people/1", "/people/lookup?id=ada", "/people.csv", "/accounts/acme",
         "/segments", "/segments/1"]  # fmt: skip
FRAGMENTS = ["/people/rows", "/people/1/timeline", "/accounts/timeline?id=acme", "/segments/table",
             "/segments/1/members", "/segments/1/status"]  # fmt: skip


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_a_signed_out_browser_to_the_sign_in_form(site: Site, path: str) -> None:
    journey(site)
    site.client.cookies.clear()
    answer = site.client.get(path, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")


@pytest.mark.parametrize("path", FRAGMENTS)
def test_fragments_answer_401_when_signed_out(site: Site, path: str) -> None:
    site.client.cookies.set(SESSION_COOKIE, "cairn_wrong")
    answer = site.client.get(path)
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("path", "form"),
    [("/people/1/unmerge", {"merge_id": "x"}), ("/segments/new", {"name": "a", "query": "a = 1"}),
     ("/segments/1/delete", {})],
)  # fmt: skip
def test_posts_need_the_session_and_the_same_site(
    site: Site, path: str, form: dict[str, str]
) -> None:
    cross = site.client.post(
        path, data=form, headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False
    )
    assert cross.status_code == 403
    site.client.cookies.clear()
    signed_out = site.client.post(path, data=form, follow_redirects=False)
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/")


def test_the_header_links_people_and_segments_beside_the_debugger(site: Site) -> None:
    for path, active in (("/", "/"), ("/people", "/people"), ("/segments", "/segments")):
        page = site.client.get(path).text
        nav = page[page.index('class="topnav"') : page.index("</nav>")]
        assert re.findall(r'href="/(?:people|segments)?"', nav) == [
            'href="/"',
            'href="/people"',
            'href="/segments"',
        ]
        assert f'class="is-active" aria-current="page" href="{active}"' in nav


# ---- people: list, search, lookup, export -------------------------------------------------


def test_people_lists_everyone_most_recently_seen_first(site: Site) -> None:
    ada = journey(site)
    page = site.client.get("/people")
    assert page.status_code == 200
    assert "Everyone, most recently seen first." in page.text
    bob = site.person_id("bob")
    assert people_ids(page.text) == [bob, ada]
    assert "Ada Lovelace" in page.text
    assert "ada@example.com" in page.text
    assert ">ada<" in page.text  # the user id column
    assert 'href="/people.csv"' in page.text


def test_a_text_search_shows_the_matches_and_their_count(site: Site) -> None:
    ada = journey(site)
    query = 'plan = "pro" and did "Order Completed" at least 3 times in last 30 days'
    page = site.client.get("/people", params={"q": query})
    assert page.status_code == 200
    assert people_ids(page.text) == [ada]
    assert "<strong>1</strong> person matches" in page.text
    assert 'value="plan = &#34;pro&#34; and did' in page.text  # the query stays in the box
    assert 'href="/people.csv?q=plan+%3D+%22pro%22+and+did' in page.text
    nobody = site.client.get("/people", params={"q": 'plan = "enterprise"'}).text
    assert people_ids(nobody) == []
    assert "No one matches" in nobody


def test_a_broken_query_is_shown_with_the_error_at_its_position(site: Site) -> None:
    journey(site)
    query = 'plan = "pro" and did "Order Completed" at leest 3 times'
    page = site.client.get("/people", params={"q": query})
    assert page.status_code == 400
    assert 'id="query-error"' in page.text
    assert "expected &#34;least&#34; or &#34;most&#34; after &#34;at&#34;" in page.text
    assert "column 43" in page.text
    assert "at <mark>l</mark>eest 3 times</pre>" in page.text
    assert people_ids(page.text) == []
    ended = site.client.get("/people", params={"q": "plan ="})
    assert ended.status_code == 400
    assert "plan =<mark> </mark></pre>" in ended.text  # the end of the text is marked too


def test_pages_of_people_follow_the_cursor(site: Site) -> None:
    site.send(*[identify(f"user_{n:02}", name=f"User {n}") for n in range(55)])
    page = site.client.get("/people", params={"q": "name exists"}).text
    first = people_ids(page)
    assert len(first) == 50
    more = re.search(r'hx-get="(/people/rows\?[^"]+)"', page)
    assert more is not None
    rest = site.client.get(more.group(1).replace("&amp;", "&"))
    assert rest.status_code == 200
    assert len(people_ids(rest.text)) == 5
    assert set(first).isdisjoint(people_ids(rest.text))
    assert "Load more" not in rest.text
    everyone = site.client.get("/people").text
    assert 'hx-get="/people/rows?cursor=' in everyone


def test_the_csv_download_streams_every_match(site: Site) -> None:
    journey(site)
    site.send(identify("eve", email="=cmd()", plan="pro"))
    answer = site.client.get("/people.csv", params={"q": 'plan = "pro"'})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="people.csv"' in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:3] == ["id", "email", "name"]
    assert sorted(r[1] for r in rows[1:]) == ["'=cmd()", "ada@example.com"]
    everyone = list(csv.reader(io.StringIO(site.client.get("/people.csv").text)))
    assert len(everyone) == 1 + 3
    broken = site.client.get("/people.csv", params={"q": "plan ="})
    assert broken.status_code == 400
    assert "expected a value" in broken.text


@pytest.mark.parametrize("value", ["ada", "browser-1", "ADA@example.com"])
def test_lookup_finds_a_person_by_any_identifier(site: Site, value: str) -> None:
    ada = journey(site)
    answer = site.client.get("/people/lookup", params={"id": value}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, f"/people/{ada}")


def test_an_unknown_lookup_says_so(site: Site) -> None:
    journey(site)
    answer = site.client.get("/people/lookup", params={"id": f"nobody{HOSTILE}"})
    assert answer.status_code == 404
    assert 'id="lookup-error"' in answer.text
    assert "No person has the user id, anonymous id or email" in answer.text
    assert "<script>alert" not in answer.text
    assert site.client.get("/people/lookup", params={"id": " "}).status_code == 400


# ---- a person -----------------------------------------------------------------------------


def test_the_person_page_shows_the_profile(site: Site) -> None:
    ada = journey(site)
    site.client.post("/segments/new", data={"name": "Pros", "query": 'plan = "pro"'})
    site.settle()
    page = site.client.get(f"/people/{ada}")
    assert page.status_code == 200
    html = page.text
    assert '<h1 id="person-name">Ada Lovelace</h1>' in html
    assert "browser-1" in html
    assert ">ada<" in html
    assert '<th scope="row">plan</th><td>pro</td>' in html
    assert 'href="/accounts/acme">Acme Inc</a>' in html
    assert re.search(r'href="/segments/\d+">Pros</a>', html)
    assert "30.00" in html  # revenue
    assert re.search(r"<td>Order Completed</td><td class=\"num\">3</td>", html)
    assert "Undo merge" in html
    assert 'hx-confirm="Undo this merge?' in html
    assert 'id="identifier-limit"' not in html


def test_a_merged_id_shows_the_person_it_was_merged_into(site: Site) -> None:
    ada = journey(site)
    merged = ada - 1 if ada > 1 else ada + 1
    page = site.client.get(f"/people/{merged}")
    assert page.status_code == 200
    assert f"Person {merged} was merged into this person." in page.text
    assert '<h1 id="person-name">Ada Lovelace</h1>' in page.text


def test_the_timeline_pages_newest_first_and_filters(site: Site) -> None:
    site.send(identify("ada", name="Ada"), *[track(f"Step {n}", "ada") for n in range(40)])
    ada = site.person_id("ada")

    def timeline(**params: str) -> str:
        html = site.client.get(f"/people/{ada}", params=params).text
        return html[html.index('id="timeline"') :]

    html = timeline()
    first = timeline_keys(html)
    assert len(first) == 30
    assert "Step 39<" in html
    assert "Step 9<" not in html
    more = re.search(rf'hx-get="(/people/{ada}/timeline\?cursor=[^"]+)"', html)
    assert more is not None
    rest = site.client.get(more.group(1).replace("&amp;", "&")).text
    assert set(timeline_keys(rest)).isdisjoint(first)
    assert "Step 0<" in rest
    assert "Load more" not in rest
    only_identify = timeline(types="identify")
    assert len(timeline_keys(only_identify)) == 1
    assert ">identify<" in only_identify
    assert "Step" not in only_identify
    history = timeline(types="trait_changed")
    assert "name: null → Ada<" in history
    named = timeline(event="Step 7")
    assert len(timeline_keys(named)) == 1
    assert "&#34;event&#34;: &#34;Step 7&#34;" in named  # the event's JSON, to expand


def test_undo_merge_through_the_page(site: Site) -> None:
    ada = journey(site)
    html = site.client.get(f"/people/{ada}").text
    merge_id = re.search(r'name="merge_id" value="(mrg_[^"]+)"', html)
    assert merge_id is not None
    path = f"/people/{ada}/unmerge"
    done = site.client.post(path, data={"merge_id": merge_id.group(1)}, headers=HTMX)
    assert done.status_code == 204
    location = done.headers["hx-redirect"]
    assert location.startswith(f"/people/{ada}?unmerged=")
    after = site.client.get(location).text
    assert 'id="unmerged-notice"' in after
    assert "Undo merge" not in after
    identifiers = after[after.index('id="identifiers"') : after.index("</ul>")]
    assert "browser-1" not in identifiers
    assert "ada" in identifiers
    again = site.client.post(path, data={"merge_id": merge_id.group(1)}, headers=HTMX)
    assert again.status_code == 200  # htmx swaps it in place, above the merges
    assert "was already undone" in again.text
    plain = site.client.post(path, data={"merge_id": "mrg_nope"}, follow_redirects=False)
    assert plain.status_code == 404
    assert "no merge" in plain.text


def test_a_refused_identifier_is_shown(make_site: SiteFactory) -> None:
    site = make_site(identity_max_identifiers=2)
    site.send(identify("ada", "a1"), identify("ada", "a2"), identify("ada", "a3"))
    html = site.client.get(f"/people/{site.person_id('ada')}").text
    assert 'id="identifier-limit"' in html
    assert "a person has at most 2" in html


# ---- an account ---------------------------------------------------------------------------


def test_the_account_page_shows_traits_members_and_timeline(site: Site) -> None:
    ada = journey(site)
    site.send({"type": "group", "userId": "bob", "groupId": "a/b <c>", "traits": {"x": HOSTILE}})
    page = site.client.get("/accounts/acme")
    assert page.status_code == 200
    assert '<h1 id="account-name">Acme Inc</h1>' in page.text
    assert f'href="/people/{ada}">Ada Lovelace</a>' in page.text
    assert len(timeline_keys(page.text)) == 8  # every event of ada's, merged browser included
    bob = site.client.get(f"/people/{site.person_id('bob')}").text
    link = re.search(r'href="(/accounts\?id=a%2Fb[^"]*)"', bob)
    assert link is not None  # a slash cannot travel in the path
    odd = site.client.get(link.group(1).replace("&amp;", "&"))
    assert odd.status_code == 200
    assert "a/b &lt;c&gt;" in odd.text
    assert "<script>alert" not in odd.text
    assert site.client.get("/accounts/a%20%3Cc%3E").status_code == 404


# ---- segments -----------------------------------------------------------------------------


def test_segments_are_created_listed_shown_and_deleted(site: Site) -> None:
    ada = journey(site)
    made = site.client.post(
        "/segments/new", data={"name": "Buyers", "query": 'did "Order Completed"'},
        follow_redirects=False,
    )  # fmt: skip
    assert made.status_code == 303
    segment = made.headers["location"]
    listed = site.client.get("/segments").text
    assert "Waiting to backfill" in listed
    assert 'hx-get="/segments/table" hx-trigger="every 1s"' in listed  # refreshes until done
    site.settle()
    listed = site.client.get("/segments").text
    assert "Buyers" in listed
    assert "did &#34;Order Completed&#34;" in listed
    assert ">Live<" in listed
    assert 'hx-trigger="every 1s"' not in listed
    page = site.client.get(segment).text
    assert people_ids(page) == [ada]
    assert 'hx-confirm="Delete the segment' in page
    status = site.client.get(segment + "/status")
    assert status.headers["hx-refresh"] == "true"
    deleted = site.client.post(segment + "/delete", headers=HTMX)
    assert (deleted.status_code, deleted.headers["hx-redirect"]) == (204, "/segments")
    assert site.client.get(segment).status_code == 404


def test_segment_members_page_by_cursor(site: Site) -> None:
    site.send(*[identify(f"user_{n:02}", plan="pro") for n in range(55)])
    site.client.post("/segments/new", data={"name": "Pros", "query": 'plan = "pro"'})
    site.settle()
    page = site.client.get("/segments/1").text
    assert len(people_ids(page)) == 50
    assert '<strong id="member-count">55</strong>' in page
    rest = site.client.get("/segments/1/members?cursor=" + str(max(people_ids(page))))
    assert len(people_ids(rest.text)) == 5


def test_segment_errors_are_shown_in_the_form(site: Site) -> None:
    site.client.post("/segments/new", data={"name": "Pros", "query": 'plan = "pro"'})
    broken = site.client.post("/segments/new", data={"name": "X", "query": "plan = = 1"})
    assert broken.status_code == 400
    assert 'id="query-error"' in broken.text
    assert "plan = <mark>=</mark> 1" in broken.text
    assert 'value="X"' in broken.text  # the form keeps what was typed
    taken = site.client.post("/segments/new", data={"name": "Pros", "query": "a = 1"})
    assert taken.status_code == 409
    assert "already exists" in taken.text
    empty = site.client.post("/segments/new", data={"name": "Y", "query": " "})
    assert empty.status_code == 400
    unknown = site.client.post("/segments/new", data={"name": "Z", "query": 'in segment "No"'})
    assert unknown.status_code == 404
    assert "does not exist" in unknown.text


def test_a_segment_others_refer_to_cannot_be_deleted(site: Site) -> None:
    site.client.post("/segments/new", data={"name": "Pros", "query": 'plan = "pro"'})
    site.client.post("/segments/new", data={"name": "Both", "query": 'in segment "Pros"'})
    refused = site.client.post("/segments/1/delete", headers=HTMX)
    assert refused.status_code == 200
    assert "refers to" in refused.text
    plain = site.client.post("/segments/1/delete", follow_redirects=False)
    assert plain.status_code == 409


# ---- bad input and escaping ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/people/abc", 404, "There is no person"),
        ("/people/%C2%B2", 404, "There is no person"),  # "²": str.isdigit, but not int
        ("/segments/%C2%B2", 404, "There is no segment"),
        ("/people/99999", 404, "no person 99999"),
        ("/people/1?types=bogus", 400, "unknown type"),
        ("/people?cursor=zzz", 400, "invalid cursor"),
        ("/people?q=plan%3D%22pro%22&cursor=zzz", 400, "invalid cursor"),
        ("/accounts/nope", 404, "no account"),
        ("/segments/abc", 404, "There is no segment"),
        ("/segments/77", 404, "no segment 77"),
        ("/people/1/timeline?cursor=x", 400, "invalid cursor"),
        ("/people/abc/timeline", 404, "There is no person"),
        ("/people/rows?cursor=bad", 400, "invalid cursor"),
        ("/accounts/timeline?id=acme&cursor=1.2", 400, "invalid cursor"),
        ("/accounts/timeline?id=nope", 404, "no account"),
        ("/accounts?id=", 404, "no account"),
        ("/segments/1/members?cursor=x", 400, "invalid cursor"),
    ],
)
def test_bad_ids_cursors_and_filters_answer_4xx_with_a_message(
    site: Site, path: str, status: int, message: str
) -> None:
    journey(site)
    site.client.post("/segments/new", data={"name": "Pros", "query": 'plan = "pro"'})
    answer = site.client.get(path)
    assert answer.status_code == status, answer.text
    assert message in answer.text
    assert 'role="alert"' in answer.text


def test_hostile_values_are_shown_as_text(site: Site) -> None:
    site.send(
        identify("x<b>", name=HOSTILE, email=f"{HOSTILE}@x.y", **{HOSTILE: "v"}),
        track(HOSTILE, "x<b>", note=HOSTILE),
        {"type": "group", "userId": "x<b>", "groupId": HOSTILE, "traits": {"name": HOSTILE}},
    )
    site.client.post("/segments/new", data={"name": HOSTILE, "query": f"name = {HOSTILE!r}"})
    site.client.post("/segments/new", data={"name": HOSTILE, "query": '`n"` = "<i>"'})
    site.settle()
    person = site.person_id("x<b>")
    pages = [
        "/people",
        f"/people?q=name+%3D+{HOSTILE}",
        f"/people/{person}",
        f"/people/{person}/timeline",
        "/accounts/%3Cscript%3Ealert('x')%3C%2Fscript%3E",
        "/segments",
        "/segments/1",
        f"/people/lookup?id={HOSTILE}",
    ]
    for path in pages:
        html = site.client.get(path).text
        assert "<script>alert" not in html, path
        assert "<b>" not in html, path
        assert "<i>" not in html, path
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in site.client.get("/people").text


def test_a_token_only_sees_its_own_workspace(site: Site) -> None:
    ada = journey(site)
    other = site.runtime.storage.create_workspace("other")
    key = create_source(site.runtime.storage, other, "web").write_key
    _, token = create_token(site.runtime.storage, other)
    site.send(identify("zed", name="Zed"), write_key=key)
    site.login(token)
    assert "Ada Lovelace" not in site.client.get("/people").text
    assert "Zed" in site.client.get("/people").text
    assert site.client.get(f"/people/{ada}").status_code == 404
    assert site.client.get("/accounts/acme").status_code == 404
    assert site.client.get("/people/lookup", params={"id": "ada"}).status_code == 404
