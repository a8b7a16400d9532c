"""Server-rendered pages: login and the live debugger (Jinja2 templates, htmx polling; docs/ui.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar import MediaType, Request, Response, get, post, route
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from cairn.errors import InvalidToken
from cairn.ingest.messages import MESSAGE_TYPES
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.log.writer import LogWriter
from cairn.storage.base import EventQuery, LogEntry, RejectedEntry, Source, Storage, Token
from cairn.web.api import SESSION_COOKIE, bearer, event_json, rejected_json
from cairn.workspaces import authenticate

__all__ = ["Pages", "environment", "html_response", "message_label", "page_routes", "same_origin"]

PAGE_SIZE = 50
POLL_SIZE = 100
REJECTED_COUNT_CAP = 100
SESSION_SECONDS = 7 * 24 * 3600
_STATIC = Path(__file__).parent / "static"
_HTML_HEADERS = {
    # Escaping is the first defence; the policy is the second: no inline script, no eval.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_Request = Request[Any, Any, Any]
_Cursor = Annotated[int | None, QueryParameter(ge=0, lt=2**62)]
_Type = Annotated[str | None, QueryParameter(name="type")]
_Text = Annotated[str | None, QueryParameter()]


@dataclass(frozen=True, slots=True)
class Filters:
    """The debugger's server-side filters; unknown types and blank names mean "any"."""

    type: str | None = None
    event: str | None = None

    @classmethod
    def parse(cls, type_: str | None, event: str | None) -> Filters:
        kind = type_ if type_ in MESSAGE_TYPES else None
        name = (event or "").strip()[:200] or None
        return cls(kind, name)

    @property
    def active(self) -> bool:
        return self.type is not None or self.event is not None

    def query(self, *, after_seq: int | None = None, before_seq: int | None = None) -> EventQuery:
        return EventQuery(
            limit=PAGE_SIZE if after_seq is None else POLL_SIZE,
            after_seq=after_seq,
            before_seq=before_seq,
            type=self.type,
            event=self.event,
        )

    def url(self, path: str, **cursor: int) -> str:
        params = {"type": self.type, "event": self.event, **cursor}
        return f"{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    type: str
    label: str
    user: str
    anonymous: bool
    source: str
    received: str
    message_id: str
    json: str


@dataclass(frozen=True, slots=True)
class RejectedRow:
    id: int
    code: str
    message: str
    source: str
    received: str
    body: str


def message_label(message: dict[str, Any]) -> str:
    """What a row calls a message: the event, the page or screen name, the traits, the ids."""
    kind = message.get("type")
    if kind == "track":
        return str(message.get("event", ""))
    if kind in ("page", "screen"):
        return str(message.get("name") or message.get("properties", {}).get("name") or "")
    if kind == "identify":
        return ", ".join(list(message.get("traits", {}))[:4])
    if kind == "group":
        return str(message.get("groupId", ""))
    return f"{message.get('previousId', '')} → {message.get('userId', '')}"


def _event_row(entry: LogEntry, sources: dict[str, str]) -> EventRow:
    message = event_json(entry)
    return EventRow(
        seq=entry.seq,
        type=entry.type,
        label=message_label(message),
        user=entry.user_id or entry.anonymous_id or "",
        anonymous=entry.user_id is None,
        source=sources.get(entry.source_id, entry.source_id),
        received=format_ms(entry.received_ms),
        message_id=entry.message_id,
        json=json.dumps(message, indent=2, ensure_ascii=False),
    )


def _rejected_row(entry: RejectedEntry, sources: dict[str, str]) -> RejectedRow:
    body = rejected_json(entry)["body"]
    text = body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
    return RejectedRow(
        id=entry.id,
        code=entry.code,
        message=entry.message,
        source=sources.get(entry.source_id, entry.source_id),
        received=format_ms(entry.received_ms),
        body=text,
    )


def _clock(received: str) -> str:
    """A row's time: `13:08:01.677` today (UTC), `Nov 28 13:08:01` before, a date in other years."""
    today = format_ms(now_ms())
    if received[:10] == today[:10]:
        return received[11:23]
    moment = datetime.fromisoformat(received)
    return moment.strftime("%b %d %H:%M:%S" if received[:4] == today[:4] else "%Y-%m-%d %H:%M")


def _static_versions() -> dict[str, str]:
    """A content hash per static file, so URLs change when files do and can be cached."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10]
        for p in _STATIC.iterdir()
        if p.is_file()
    }


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cairn.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    versions = _static_versions()
    env.globals["static"] = lambda name: f"/static/{name}?v={versions.get(name, '0')}"
    env.globals["message_types"] = MESSAGE_TYPES
    env.filters["clock"] = _clock
    return env


def html_response(body: str, status_code: int = 200) -> Response[str]:
    return Response(body, status_code=status_code, media_type=MediaType.HTML, headers=_HTML_HEADERS)


def _no_content() -> Response[str]:
    return Response("", status_code=204, headers={"Cache-Control": "no-store"})


def same_origin(request: _Request) -> bool:
    """Refuse cross-site form posts (login CSRF); clients that send no Origin are not browsers."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def _session_cookie(request: _Request, token: str) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        path="/",
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _first_source(sources: list[Source]) -> Source | None:
    return next((s for s in sources if s.enabled), sources[0] if sources else None)


class Pages:
    """The templates and the session check that every group of pages shares."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.templates = environment()

    def render(self, template: str, status_code: int = 200, **context: Any) -> Response[str]:
        return html_response(self.templates.get_template(template).render(**context), status_code)

    def session(self, request: _Request) -> Token | None:
        try:
            return authenticate(self.storage, bearer(request))
        except InvalidToken:
            return None


class _Debugger(Pages):
    """Reads one workspace's events and rejections and renders them; one per app."""

    def source_names(self, workspace_id: int) -> dict[str, str]:
        return {s.id: s.name for s in self.storage.list_sources(workspace_id)}

    def events(
        self, token: Token, filters: Filters, *, after: int | None = None, before: int | None = None
    ) -> list[EventRow]:
        query = filters.query(after_seq=after, before_seq=before)
        entries = self.storage.query_events(token.workspace_id, query)
        names = self.source_names(token.workspace_id)
        return [_event_row(e, names) for e in entries]

    def rejected(self, token: Token, *, before: int | None, after: int | None) -> list[RejectedRow]:
        limit = POLL_SIZE if after is not None else PAGE_SIZE
        entries = self.storage.list_rejected(token.workspace_id, before_id=before, limit=limit)
        names = self.source_names(token.workspace_id)
        return [_rejected_row(e, names) for e in entries if after is None or e.id > after]

    def poll_events(self, token: Token, filters: Filters, after: int) -> tuple[list[EventRow], int]:
        """Rows newer than `after`, and the next poll's cursor. With filters on, the cursor also moves
        past events that did not match, so a rare filter on a busy workspace stays cheap."""
        newest = self.newest_seq(token.workspace_id) if filters.active else after
        rows = self.events(token, filters, after=after)
        return rows, rows[0].seq if rows else max(after, newest)

    def newest_seq(self, workspace_id: int) -> int:
        events = self.storage.query_events(workspace_id, EventQuery(limit=1))
        return events[0].seq if events else 0

    def newest(self, workspace_id: int) -> tuple[int, int]:
        """The newest event seq and rejection id of a workspace (0 when none): the counts' key."""
        rejected = self.storage.list_rejected(workspace_id, before_id=None, limit=1)
        return (self.newest_seq(workspace_id), rejected[0].id if rejected else 0)

    def tabs(self, token: Token, tab: str) -> dict[str, Any]:
        seq, rid = self.newest(token.workspace_id)
        rejected = len(
            self.storage.list_rejected(token.workspace_id, before_id=None, limit=REJECTED_COUNT_CAP)
        )
        return {
            "tab": tab,
            "event_count": self.storage.count_events(token.workspace_id),
            "rejected_count": rejected,
            "rejected_capped": rejected >= REJECTED_COUNT_CAP,
            "counts_url": f"/debugger/counts?{urlencode({'seq': seq, 'rid': rid, 'tab': tab})}",
        }

    def page(self, request: _Request, token: Token, tab: str, filters: Filters) -> Response[str]:
        workspace = self.storage.workspace_by_id(token.workspace_id)
        sources = self.storage.list_sources(token.workspace_id)
        context: dict[str, Any] = {
            "workspace": workspace.name if workspace else "",
            "source": _first_source(sources),
            "base_url": str(request.base_url).rstrip("/"),
            "filters": filters,
            **self.tabs(token, tab),
        }
        if tab == "events":
            context.update(self.events_context(token, filters))
        else:
            context.update(self.rejected_context(token))
        return self.render("debugger.html", **context)

    def events_context(self, token: Token, filters: Filters) -> dict[str, Any]:
        rows = self.events(token, filters)
        newest = rows[0].seq if rows else self.newest_seq(token.workspace_id)
        return {
            "rows": rows,
            "poll_url": filters.url("/debugger/events", after=newest),
            "older_url": _older_url(filters, rows),
        }

    def rejected_context(self, token: Token) -> dict[str, Any]:
        rows = self.rejected(token, before=None, after=None)
        newest = rows[0].id if rows else 0
        return {
            "rows": rows,
            "poll_url": f"/debugger/rejected?after={newest}",
            "older_url": _older_rejected_url(rows),
        }


def _older_url(filters: Filters, rows: list[EventRow]) -> str | None:
    """The next page's URL when this one was full."""
    return filters.url("/debugger/events", before=rows[-1].seq) if len(rows) == PAGE_SIZE else None


def _older_rejected_url(rows: list[RejectedRow]) -> str | None:
    return f"/debugger/rejected?before={rows[-1].id}" if len(rows) == PAGE_SIZE else None


def page_routes(storage: Storage, writer: LogWriter) -> list[ControllerRouterHandler]:
    """The login form, the debugger's two tabs, their htmx fragments and the static files."""
    debugger = _Debugger(storage)
    return [
        *_session_routes(debugger),
        *_page_routes(debugger),
        *_fragment_routes(debugger),
        create_static_files_router(
            path="/static",
            directories=[_STATIC],
            cache_control=CacheControlHeader(max_age=86400),
            include_in_schema=False,
        ),
    ]


def _session_routes(debugger: _Debugger) -> list[ControllerRouterHandler]:
    @post("/login", sync_to_thread=True, include_in_schema=False, status_code=303)
    def login(
        request: _Request,
        data: URLEncodedBody[dict[str, str]],
    ) -> Response[Any]:
        if not same_origin(request):
            return debugger.render("login.html", 403, error="Cross-site sign-in refused.")
        secret = data.get("token", "").strip()
        try:
            authenticate(debugger.storage, secret)
        except InvalidToken:
            message = "Enter your admin token." if not secret else "That token is not valid."
            return debugger.render("login.html", 401, error=message)
        return Redirect("/", status_code=303, cookies=[_session_cookie(request, secret)])

    @route("/logout", http_method=["GET", "POST"], include_in_schema=False, status_code=303)
    async def logout(request: _Request) -> Response[Any]:
        if request.method == "POST" and not same_origin(request):
            return html_response("Cross-site sign-out refused.", 403)
        redirect = Redirect("/", status_code=303)
        redirect.delete_cookie(SESSION_COOKIE, path="/")
        return redirect

    return [login, logout]


def _page_routes(debugger: _Debugger) -> list[ControllerRouterHandler]:
    @get("/", sync_to_thread=True, include_in_schema=False)
    def events_page(
        request: _Request,
        type_: _Type = None,
        event: _Text = None,
    ) -> Response[Any]:
        token = debugger.session(request)
        if token is None:
            return _login_page(debugger, request)
        return debugger.page(request, token, "events", Filters.parse(type_, event))

    @get("/rejected", sync_to_thread=True, include_in_schema=False)
    def rejected_page(request: _Request) -> Response[Any]:
        token = debugger.session(request)
        if token is None:
            return Redirect("/", status_code=303)
        return debugger.page(request, token, "rejected", Filters())

    return [events_page, rejected_page]


def _login_page(debugger: _Debugger, request: _Request) -> Response[str]:
    """The login form; a stale cookie (a deleted token) is cleared and explained."""
    if SESSION_COOKIE not in request.cookies:
        return debugger.render("login.html", error=None)
    response = debugger.render("login.html", error="Your session has ended. Sign in again.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _fragment_routes(debugger: _Debugger) -> list[ControllerRouterHandler]:
    def token_of(request: _Request) -> Token:
        return authenticate(debugger.storage, bearer(request))

    @get("/debugger/events", sync_to_thread=True, include_in_schema=False)
    def event_rows(
        request: _Request,
        after: _Cursor = None,
        before: _Cursor = None,
        type_: _Type = None,
        event: _Text = None,
    ) -> Response[str]:
        token, filters = token_of(request), Filters.parse(type_, event)
        if after is None:
            rows = debugger.events(token, filters, before=before)
            return debugger.render(
                "_events_older.html", rows=rows, older_url=_older_url(filters, rows)
            )
        rows, cursor = debugger.poll_events(token, filters, after)
        if cursor == after:
            return _no_content()
        poll_url = filters.url("/debugger/events", after=cursor)
        return debugger.render("_events_poll.html", rows=rows, poll_url=poll_url)

    @get("/debugger/rejected", sync_to_thread=True, include_in_schema=False)
    def rejected_rows(
        request: _Request, after: _Cursor = None, before: _Cursor = None
    ) -> Response[str]:
        token = token_of(request)
        rows = debugger.rejected(token, before=before, after=after)
        if after is None:
            older_url = _older_rejected_url(rows)
            return debugger.render("_rejected_older.html", rows=rows, older_url=older_url)
        if not rows:
            return _no_content()
        poll_url = f"/debugger/rejected?after={rows[0].id}"
        return debugger.render("_rejected_poll.html", rows=rows, poll_url=poll_url)

    @get("/debugger/counts", sync_to_thread=True, include_in_schema=False)
    def counts(
        request: _Request,
        seq: _Cursor = None,
        rid: _Cursor = None,
        tab: Annotated[str, QueryParameter()] = "events",
    ) -> Response[str]:
        token = token_of(request)
        if debugger.newest(token.workspace_id) == (seq, rid):
            return _no_content()
        tab = tab if tab in ("events", "rejected") else "events"
        return debugger.render("_tabs.html", **debugger.tabs(token, tab))

    return [event_rows, rejected_rows, counts]
