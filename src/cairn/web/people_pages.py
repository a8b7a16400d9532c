"""Pages to find customers and look at them: people search, a person, an account, segments.

Server-rendered like the debugger (cairn.web.pages), over the same library calls the API makes.
Pages need the session and send a signed-out browser to the sign-in form; their htmx fragments
answer 401 instead. Bad input (an unknown id, a broken query, a bad cursor) renders a page with
the message and a 4xx status, never a 500 (docs/ui.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Stream
from litestar.types import ControllerRouterHandler

from cairn.errors import BadRequest, CairnError, NotFound
from cairn.finder.search import Search
from cairn.finder.segments import Segments
from cairn.finder.text import parse
from cairn.finder.tree import ConditionError
from cairn.identity.unmerge import unmerge
from cairn.ids import parse_int
from cairn.log.wakeup import PipelineRunner
from cairn.pipeline.runner import Pipeline
from cairn.profiles import read
from cairn.storage.base import Token
from cairn.storage.sql import SQLStorage
from cairn.timeline import TimelineQuery, account_timeline, person_timeline
from cairn.web.api import bearer
from cairn.web.errors import path_id
from cairn.web.pages import Pages, html_response, same_origin
from cairn.web.people_views import (
    account_url,
    display_name,
    person_rows,
    shown,
    timeline_filters,
    timeline_row,
)
from cairn.workspaces import authenticate

__all__ = ["people_page_routes"]

PAGE_SIZE = 50
TIMELINE_PAGE = 30
_Request = Request[Any, Any, Any]
_Text = Annotated[str | None, QueryParameter()]
_Form = URLEncodedBody[dict[str, str]]
_HEADINGS = {400: "Cannot read the request", 404: "Not found", 409: "Not possible"}


def _url(path: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{path}?{query}" if query else path


def _person_id(raw: str) -> int:
    return path_id(raw, "There is no person {raw!r}.")


def _segment_id(raw: str) -> int:
    return path_id(raw, "There is no segment {raw!r}.")


class _People(Pages):
    """Renders the people, account and segment pages of one app."""

    def __init__(self, pipeline: Pipeline, runner: PipelineRunner | None) -> None:
        super().__init__(pipeline.storage)
        self.storage: SQLStorage = pipeline.storage
        self.store = pipeline.store
        self.rules = pipeline.rules
        self.segments = Segments(self.store)
        self.runner = runner
        self.templates.filters["shown"] = shown
        self.templates.filters["when"] = lambda iso: (iso or "")[:16].replace("T", " ")
        self.templates.globals["account_url"] = account_url
        self.templates.globals["timeline_filters"] = timeline_filters()

    # rendering and sessions -------------------------------------------------------------------
    def token(self, request: _Request) -> Token:
        """For fragments: a signed-out request answers 401 (JSON) and the page goes to sign-in."""
        return authenticate(self.storage, bearer(request))

    def workspace(self, token: Token) -> str:
        found = self.storage.workspace_by_id(token.workspace_id)
        return found.name if found else ""

    def page(
        self, request: _Request, section: str, build: Callable[[Token], Response[Any]]
    ) -> Response[Any]:
        """`build`'s page for a signed-in browser; an error page for bad input."""
        token = self.session(request)
        if token is None:
            return Redirect("/", status_code=303)
        try:
            return build(token)
        except CairnError as exc:
            return self.error(token, section, exc)

    def view(self, template: str, token: Token, section: str, **context: Any) -> Response[str]:
        status = context.pop("status_code", 200)
        return self.render(
            template, status, workspace=self.workspace(token), section=section, **context
        )

    def error(self, token: Token, section: str, exc: CairnError) -> Response[str]:
        status = exc.status if 400 <= exc.status < 500 else 500
        heading = _HEADINGS.get(status, "This cannot be shown")
        return self.view(
            "people_error.html", token, section, status_code=status, message=exc.message,
            heading=heading,
        )  # fmt: skip

    def fragment(self, template: str, build: Callable[[], dict[str, Any]]) -> Response[str]:
        """A fragment, or the error as a small alert with its 4xx status."""
        try:
            return self.render(template, **build())
        except CairnError as exc:
            if exc.status >= 500:
                raise
            return self.render("_people_alert.html", exc.status, message=exc.message)

    # people -----------------------------------------------------------------------------------
    def search(self, token: Token, query: str, cursor: str | None) -> dict[str, Any]:
        """One page of people: those matching `query` (the text form), or everyone."""
        if query:
            found = Search(self.storage, token.workspace_id, parse(query))
            page = found.page(PAGE_SIZE, cursor)
        else:
            page = read.list_people(self.store, token.workspace_id, limit=PAGE_SIZE, cursor=cursor)
        return {
            "rows": person_rows(self.store, page["data"]),
            "total": page.get("total"),
            "more_url": page["next_cursor"]
            and _url("/people/rows", q=query, cursor=page["next_cursor"]),
        }

    def people(self, token: Token, query: str, cursor: str | None) -> Response[str]:
        context: dict[str, Any] = {"q": query, "error": None, "lookup": None, "lookup_error": None}
        try:
            context.update(self.search(token, query, cursor))
        except ConditionError as exc:
            context.update(rows=[], total=None, more_url=None, error=exc, status_code=400)
        return self.view("people.html", token, "people", **context)

    def lookup(self, token: Token, value: str) -> int:
        """The person `value` names: a user id, an anonymous id, an email, or a person id."""
        value = value.strip()
        if not value:
            raise BadRequest("Enter a user id, an anonymous id or an email.")
        kinds = ["user_id", "anonymous_id"] + (["email"] if "@" in value else [])
        for kind in kinds:
            try:
                return read.lookup(self.store, self.rules, token.workspace_id, {kind: value})
            except NotFound:
                continue
        if (number := parse_int(value)) is not None:
            return read.root_of(self.store, token.workspace_id, number)
        raise NotFound(f"No person has the user id, anonymous id or email {value!r}.")

    def person(
        self, token: Token, raw_id: str, filters: dict[str, str | None], unmerged: str | None
    ) -> Response[str]:
        asked = _person_id(raw_id)
        root = read.root_of(self.store, token.workspace_id, asked)
        profile = read.person_json(
            self.store, token.workspace_id, root, max_identifiers=self.rules.max_identifiers
        )
        user = next((i["value"] for i in profile["identifiers"] if i["kind"] == "user_id"), "")
        return self.view(
            "person.html",
            token,
            "people",
            person=profile,
            name=display_name(profile["traits"], user),
            merged_from_id=asked if asked != root else None,
            request_unmerged=unmerged if unmerged and parse_int(unmerged) is not None else None,
            segments=self.segments.of_person(token.workspace_id, root),
            filters=filters,
            **self.person_timeline(token, root, filters, None),
        )

    def person_timeline(
        self, token: Token, person_id: int, filters: dict[str, str | None], cursor: str | None
    ) -> dict[str, Any]:
        query = TimelineQuery.parse(
            limit=TIMELINE_PAGE, cursor=cursor, types=filters["types"], events=filters["event"]
        )
        page = person_timeline(self.store, person_id, query)
        more = page["next_cursor"] and _url(
            f"/people/{person_id}/timeline", cursor=page["next_cursor"], **filters
        )
        return {"items": [timeline_row(i) for i in page["data"]], "more_url": more}

    def unmerge(self, token: Token, raw_id: str, merge_id: str) -> str:
        """Undo the merge; the URL of the surviving person's page, which says what happened."""
        result = unmerge(self.store, token.workspace_id, _person_id(raw_id), merge_id.strip())
        if self.runner is not None:
            self.runner.wake()
        restored = result["restored_person_id"]
        return _url(f"/people/{result['person_id']}", unmerged=str(restored))

    # accounts ---------------------------------------------------------------------------------
    def account(self, token: Token, group_id: str) -> Response[str]:
        account = read.account_json(self.store, token.workspace_id, group_id)
        members = [
            {**m, "name": display_name(m["traits"]) or f"Person {m['person_id']}"}
            for m in account["members"]
        ]
        return self.view(
            "account.html",
            token,
            "people",
            account=account,
            members=members,
            **self.account_timeline(token, group_id, None),
        )

    def account_timeline(
        self, token: Token, group_id: FromPath[str], cursor: str | None
    ) -> dict[str, Any]:
        read.account_json(self.store, token.workspace_id, group_id)  # NotFound when unknown
        query = TimelineQuery.parse(limit=TIMELINE_PAGE, cursor=cursor)
        page = account_timeline(self.store, token.workspace_id, group_id, query)
        more = page["next_cursor"] and _url(
            "/accounts/timeline", id=group_id, cursor=page["next_cursor"]
        )
        return {"items": [timeline_row(i) for i in page["data"]], "more_url": more}

    # segments ---------------------------------------------------------------------------------
    def segment_table(self, token: Token) -> dict[str, Any]:
        rows = [
            (s, self.segments.member_count(s.id)) for s in self.segments.list(token.workspace_id)
        ]
        return {"segments": rows, "backfilling": any(s.backfill_state != "done" for s, _ in rows)}

    def segments_page(self, token: Token, form: dict[str, str], error: Any = None) -> Response[Any]:
        status = 200 if error is None else (error.status if 400 <= error.status < 500 else 500)
        return self.view(
            "segments.html",
            token,
            "segments",
            status_code=status,
            form=form,
            error=error,
            **self.segment_table(token),
        )

    def create_segment(self, token: Token, form: dict[str, str]) -> Response[Any]:
        name, text = form.get("name", ""), form.get("query", "").strip()
        try:
            if not text:
                raise ConditionError("Enter a condition.", position=0)
            segment = self.segments.create(token.workspace_id, name, parse(text), text)
        except CairnError as exc:
            return self.segments_page(token, {"name": name, "query": text}, exc)
        if self.runner is not None:
            self.runner.wake()
        return Redirect(f"/segments/{segment.id}", status_code=303)

    def segment(self, token: Token, raw_id: str) -> Response[str]:
        segment = self.segments.get(token.workspace_id, _segment_id(raw_id))
        return self.view(
            "segment.html",
            token,
            "segments",
            segment=segment,
            count=self.segments.member_count(segment.id),
            **self.segment_members(token, raw_id, None),
        )

    def segment_members(self, token: Token, raw_id: str, cursor: str | None) -> dict[str, Any]:
        sid = _segment_id(raw_id)
        page = self.segments.members(token.workspace_id, sid, limit=PAGE_SIZE, cursor=cursor)
        rows = person_rows(self.store, page["data"])
        entered = {item["id"]: item["entered_at"] for item in page["data"]}
        more = page["next_cursor"] and _url(f"/segments/{sid}/members", cursor=page["next_cursor"])
        return {"rows": rows, "entered": entered, "more_url": more}


def _filters(types: str | None, event: str | None) -> dict[str, str | None]:
    """The timeline's filters as the page and its fragment read them from the query string."""
    return {"types": types or None, "event": (event or "").strip() or None}


def _is_htmx(request: _Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _go(request: _Request, url: str) -> Response[Any]:
    """After a POST: htmx follows `HX-Redirect`, a plain form the 303."""
    if _is_htmx(request):
        return Response("", status_code=204, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


def _cross_site() -> Response[str]:
    return html_response("Cross-site request refused.", 403)


def _csv(lines: Iterator[str]) -> Stream:
    return Stream(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": 'attachment; filename="people.csv"',
            "Cache-Control": "no-store",
        },
    )


def people_page_routes(
    pipeline: Pipeline, runner: PipelineRunner | None
) -> list[ControllerRouterHandler]:
    """People search, lookup and export; person and account pages; segments; their fragments."""
    pages = _People(pipeline, runner)
    return [*_people_routes(pages), *_person_routes(pages), *_segment_routes(pages)]


def _people_routes(pages: _People) -> list[ControllerRouterHandler]:
    @get("/people", sync_to_thread=True, include_in_schema=False)
    def people(request: _Request, q: _Text = None, cursor: _Text = None) -> Response[Any]:
        query = (q or "").strip()
        return pages.page(request, "people", lambda t: pages.people(t, query, cursor))

    @get("/people/rows", sync_to_thread=True, include_in_schema=False)
    def people_rows(request: _Request, q: _Text = None, cursor: _Text = None) -> Response[str]:
        token = pages.token(request)
        return pages.fragment(
            "_people_rows.html", lambda: pages.search(token, (q or "").strip(), cursor)
        )

    @get("/people/lookup", sync_to_thread=True, include_in_schema=False)
    def lookup(request: _Request, id: _Text = None) -> Response[Any]:
        def found(token: Token) -> Response[Any]:
            try:
                person = pages.lookup(token, id or "")
            except CairnError as exc:
                return pages.view(
                    "people.html", token, "people", status_code=exc.status, q="", rows=[],
                    total=None, more_url=None, error=None, lookup=id, lookup_error=exc.message,
                )  # fmt: skip
            return Redirect(f"/people/{person}", status_code=303)

        return pages.page(request, "people", found)

    @get("/people.csv", sync_to_thread=True, include_in_schema=False)
    def export(request: _Request, q: _Text = None) -> Response[Any]:
        def stream(token: Token) -> Response[Any]:
            query = (q or "").strip()
            condition = parse(query) if query else None  # a broken query fails before streaming
            return _csv(Search(pages.storage, token.workspace_id, condition).csv())

        return pages.page(request, "people", stream)

    return [people, people_rows, lookup, export]


def _person_routes(pages: _People) -> list[ControllerRouterHandler]:
    @get("/people/{person_id:str}", sync_to_thread=True, include_in_schema=False)
    def person(
        request: _Request,
        person_id: FromPath[str],
        types: _Text = None,
        event: _Text = None,
        unmerged: _Text = None,
    ) -> Response[Any]:
        filters = _filters(types, event)
        return pages.page(
            request, "people", lambda t: pages.person(t, person_id, filters, unmerged)
        )

    @get("/people/{person_id:str}/timeline", sync_to_thread=True, include_in_schema=False)
    def person_timeline_rows(
        request: _Request,
        person_id: FromPath[str],
        cursor: _Text = None,
        types: _Text = None,
        event: _Text = None,
    ) -> Response[str]:
        token = pages.token(request)
        filters = _filters(types, event)

        def rows() -> dict[str, Any]:
            root = read.root_of(pages.store, token.workspace_id, _person_id(person_id))
            return pages.person_timeline(token, root, filters, cursor)

        return pages.fragment("_timeline.html", rows)

    @post("/people/{person_id:str}/unmerge", sync_to_thread=True, include_in_schema=False)
    def undo_merge(request: _Request, person_id: FromPath[str], data: _Form) -> Response[Any]:
        if not same_origin(request):
            return _cross_site()
        token = pages.session(request)
        if token is None:
            return _go(request, "/")
        try:
            return _go(request, pages.unmerge(token, person_id, data.get("merge_id", "")))
        except CairnError as exc:
            if _is_htmx(request):  # shown in place, above the merges
                return pages.render("_people_alert.html", message=exc.message)
            return pages.error(token, "people", exc)

    @get("/accounts/{group_id:str}", sync_to_thread=True, include_in_schema=False)
    def account(request: _Request, group_id: FromPath[str]) -> Response[Any]:
        return pages.page(request, "people", lambda t: pages.account(t, group_id))

    @get("/accounts", sync_to_thread=True, include_in_schema=False)
    def account_by_query(request: _Request, id: _Text = None) -> Response[Any]:
        return pages.page(request, "people", lambda t: pages.account(t, id or ""))

    @get("/accounts/timeline", sync_to_thread=True, include_in_schema=False)
    def account_timeline_rows(
        request: _Request, id: _Text = None, cursor: _Text = None
    ) -> Response[str]:
        token = pages.token(request)
        return pages.fragment(
            "_timeline.html", lambda: pages.account_timeline(token, id or "", cursor)
        )

    return [
        person, person_timeline_rows, undo_merge, account, account_by_query,
        account_timeline_rows,
    ]  # fmt: skip


def _segment_routes(pages: _People) -> list[ControllerRouterHandler]:
    @get("/segments", sync_to_thread=True, include_in_schema=False)
    def segments_list(request: _Request) -> Response[Any]:
        return pages.page(
            request, "segments", lambda t: pages.segments_page(t, {"name": "", "query": ""})
        )

    @get("/segments/table", sync_to_thread=True, include_in_schema=False)
    def segments_table(request: _Request) -> Response[str]:
        token = pages.token(request)
        return pages.fragment("_segments_table.html", lambda: pages.segment_table(token))

    @post("/segments/new", sync_to_thread=True, include_in_schema=False)
    def create(request: _Request, data: _Form) -> Response[Any]:
        if not same_origin(request):
            return _cross_site()
        return pages.page(request, "segments", lambda t: pages.create_segment(t, data))

    @get("/segments/{segment_id:str}", sync_to_thread=True, include_in_schema=False)
    def segment(request: _Request, segment_id: FromPath[str]) -> Response[Any]:
        return pages.page(request, "segments", lambda t: pages.segment(t, segment_id))

    @get("/segments/{segment_id:str}/members", sync_to_thread=True, include_in_schema=False)
    def members(
        request: _Request, segment_id: FromPath[str], cursor: _Text = None
    ) -> Response[str]:
        token = pages.token(request)
        return pages.fragment(
            "_segment_members.html", lambda: pages.segment_members(token, segment_id, cursor)
        )

    @post("/segments/{segment_id:str}/delete", sync_to_thread=True, include_in_schema=False)
    def delete(request: _Request, segment_id: FromPath[str]) -> Response[Any]:
        if not same_origin(request):
            return _cross_site()

        token = pages.session(request)
        if token is None:
            return _go(request, "/")
        try:
            pages.segments.delete(token.workspace_id, _segment_id(segment_id))
        except CairnError as exc:
            if _is_htmx(request):
                return pages.render("_people_alert.html", message=exc.message)
            return pages.error(token, "segments", exc)
        return _go(request, "/segments")

    @get("/segments/{segment_id:str}/status", sync_to_thread=True, include_in_schema=False)
    def status(request: _Request, segment_id: FromPath[str]) -> Response[str]:
        token = pages.token(request)
        try:
            segment = pages.segments.get(token.workspace_id, _segment_id(segment_id))
        except CairnError as exc:
            return pages.render("_people_alert.html", exc.status, message=exc.message)
        answer = pages.render("_segment_status.html", segment=segment)
        if segment.backfill_state == "done":
            answer.headers["HX-Refresh"] = "true"  # backfilled: reload to show the members
        return answer

    return [segments_list, segments_table, create, segment, members, delete, status]
