"""Search and saved segments under `/api/v1` (docs/finder.md)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from cairn.errors import BadRequest
from cairn.finder.search import Search, condition_from_request
from cairn.finder.segments import Segments
from cairn.finder.tree import Condition
from cairn.log.wakeup import PipelineRunner
from cairn.storage.base import Token
from cairn.storage.people import PeopleStore
from cairn.storage.sql import SQLStorage
from cairn.web.api import bearer
from cairn.web.errors import path_id
from cairn.workspaces import authenticate

__all__ = ["finder_router"]

_Auth = NamedDependency[Token]
_Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
_Text = Annotated[str | None, QueryParameter()]


class SearchIn(msgspec.Struct, forbid_unknown_fields=True):
    query: str | None = None
    condition: dict[str, Any] | None = None
    limit: int = 50
    cursor: str | None = None
    explain: bool = False


class SegmentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    query: str | None = None
    condition: dict[str, Any] | None = None


class SegmentPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    query: str | None = None
    condition: dict[str, Any] | None = None


class _CSV(Stream):
    """A streamed CSV answer from a handler whose other answers are JSON (Litestar would otherwise
    label the stream with the handler's JSON media type)."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def _text_of(condition: Condition, query: str | None) -> str:
    from cairn.finder.text import to_text

    return query if query is not None else to_text(condition)


def _segment_id(raw: str) -> int:
    return path_id(raw, "no segment {raw!r}")


def finder_router(storage: SQLStorage, runner: PipelineRunner | None) -> Router:
    segments = Segments(PeopleStore(storage))

    def token(request: Request[Any, Any, Any]) -> Token:
        return authenticate(storage, bearer(request))

    def search(token: Token, data: SearchIn, fmt: str | None, accounts: bool) -> Any:
        if not 1 <= data.limit <= 1000:
            raise BadRequest("limit is 1 to 1000", code="invalid_limit")
        condition = condition_from_request(data.query, data.condition)
        found = Search(storage, token.workspace_id, condition, accounts=accounts)
        if data.explain:
            return found.explain()
        if fmt == "csv":
            name = "accounts.csv" if accounts else "people.csv"
            return _CSV(
                found.csv(),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": f'attachment; filename="{name}"'},
            )
        if fmt not in (None, "json"):
            raise BadRequest("format is json or csv", code="invalid_format")
        return found.page(data.limit, data.cursor)

    @post("/people/search", sync_to_thread=True, status_code=200, summary="Find people")
    def search_people(token: _Auth, data: JSONBody[SearchIn], format: _Text = None) -> Any:
        return search(token, data, format, accounts=False)

    @post("/accounts/search", sync_to_thread=True, status_code=200, summary="Find accounts")
    def search_accounts(token: _Auth, data: JSONBody[SearchIn], format: _Text = None) -> Any:
        return search(token, data, format, accounts=True)

    @get("/segments", sync_to_thread=True, summary="Saved segments")
    def list_segments(token: _Auth) -> dict[str, Any]:
        return {
            "data": [s.json(segments.member_count(s.id)) for s in segments.list(token.workspace_id)]
        }

    @post("/segments", sync_to_thread=True, status_code=201, summary="Save a live segment")
    def create_segment(token: _Auth, data: JSONBody[SegmentIn]) -> dict[str, Any]:
        condition = condition_from_request(data.query, data.condition)
        text = _text_of(condition, data.query)
        segment = segments.create(token.workspace_id, data.name, condition, text)
        if runner is not None:
            runner.wake()
        return segment.json(0)

    @get("/segments/{segment_id:str}", sync_to_thread=True, summary="A segment")
    def get_segment(token: _Auth, segment_id: FromPath[str]) -> dict[str, Any]:
        segment = segments.get(token.workspace_id, _segment_id(segment_id))
        return segment.json(segments.member_count(segment.id))

    @patch("/segments/{segment_id:str}", sync_to_thread=True, summary="Rename or redefine")
    def update_segment(
        token: _Auth, segment_id: FromPath[str], data: JSONBody[SegmentPatch]
    ) -> dict[str, Any]:
        condition = None
        if data.query is not None or data.condition is not None:
            condition = condition_from_request(data.query, data.condition)
        text = _text_of(condition, data.query) if condition is not None else None
        segment = segments.update(
            token.workspace_id, _segment_id(segment_id), name=data.name,
            condition=condition, text=text,
        )  # fmt: skip
        if runner is not None:
            runner.wake()
        return segment.json(segments.member_count(segment.id))

    @delete("/segments/{segment_id:str}", sync_to_thread=True, status_code=204)
    def delete_segment(token: _Auth, segment_id: FromPath[str]) -> Response[None]:
        segments.delete(token.workspace_id, _segment_id(segment_id))
        return Response(None, status_code=204)

    @get("/segments/{segment_id:str}/members", sync_to_thread=True, summary="Current members")
    def members(
        token: _Auth, segment_id: FromPath[str], limit: _Limit = 100, cursor: _Text = None
    ) -> dict[str, Any]:
        return segments.members(
            token.workspace_id, _segment_id(segment_id), limit=limit, cursor=cursor
        )

    return Router(
        path="/api/v1",
        route_handlers=[
            search_people,
            search_accounts,
            list_segments,
            create_segment,
            get_segment,
            update_segment,
            delete_segment,
            members,
        ],
        dependencies={"token": Provide(token, sync_to_thread=True)},
        tags=["finder"],
    )
