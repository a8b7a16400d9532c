"""People, accounts, timelines and the pipeline's state under `/api/v1`, and `/metrics`.

Every route is scoped to the bearer token's workspace (the pipeline's status is the server's).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from cairn.identity.unmerge import unmerge
from cairn.ingest.timestamps import format_ms
from cairn.log.wakeup import PipelineRunner
from cairn.pipeline.runner import Pipeline
from cairn.profiles import read
from cairn.storage.base import Storage, Token
from cairn.timeline import TimelineQuery, account_timeline, person_timeline
from cairn.web.api import bearer
from cairn.web.errors import path_id
from cairn.workspaces import authenticate

__all__ = ["metrics_route", "people_router"]

_Auth = NamedDependency[Token]
_Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
_PageLimit = Annotated[int, QueryParameter(ge=1, le=200)]
_Text = Annotated[str | None, QueryParameter()]
_Flag = Annotated[bool, QueryParameter()]


class UnmergeIn(msgspec.Struct, forbid_unknown_fields=True):
    merge_id: str


class ReplayIn(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[int] | None = None


def _person_id(raw: str) -> int:
    return path_id(raw, "no person {raw!r}")


def people_router(storage: Storage, pipeline: Pipeline, runner: PipelineRunner | None) -> Router:
    store = pipeline.store
    rules = pipeline.rules

    def token(request: Request[Any, Any, Any]) -> Token:
        return authenticate(storage, bearer(request))

    def profile(workspace_id: int, person_id: int) -> dict[str, Any]:
        return read.person_json(
            store, workspace_id, person_id, max_identifiers=rules.max_identifiers
        )

    @get("/people", sync_to_thread=True, summary="People, most recently seen first")
    def list_people(token: _Auth, limit: _Limit = 50, cursor: _Text = None) -> dict[str, Any]:
        return read.list_people(store, token.workspace_id, limit=limit, cursor=cursor)

    @get("/people/lookup", sync_to_thread=True, summary="The person an identifier belongs to")
    def lookup(
        token: _Auth, user_id: _Text = None, anonymous_id: _Text = None, email: _Text = None
    ) -> dict[str, Any]:
        params = {"user_id": user_id, "anonymous_id": anonymous_id, "email": email}
        return profile(token.workspace_id, read.lookup(store, rules, token.workspace_id, params))

    @get("/people/{person_id:str}", sync_to_thread=True, summary="A person's profile")
    def get_person(token: _Auth, person_id: FromPath[str]) -> dict[str, Any]:
        return profile(token.workspace_id, _person_id(person_id))

    @get("/people/{person_id:str}/timeline", sync_to_thread=True, summary="A person's timeline")
    def get_timeline(
        token: _Auth,
        person_id: FromPath[str],
        limit: _PageLimit = 50,
        cursor: _Text = None,
        types: _Text = None,
        events: _Text = None,
        since: _Text = None,
        until: _Text = None,
    ) -> dict[str, Any]:
        root = read.root_of(store, token.workspace_id, _person_id(person_id))
        query = TimelineQuery.parse(
            limit=limit, cursor=cursor, types=types, events=events, since=since, until=until
        )
        return person_timeline(store, root, query)

    @post(
        "/people/{person_id:str}/unmerge",
        sync_to_thread=True,
        status_code=200,
        summary="Undo one merge listed in the person's merged_from",
    )
    def post_unmerge(
        token: _Auth, person_id: FromPath[str], data: JSONBody[UnmergeIn]
    ) -> dict[str, Any]:
        result = unmerge(store, token.workspace_id, _person_id(person_id), data.merge_id)
        if runner is not None:
            runner.wake()
        return {
            **result,
            "person": profile(token.workspace_id, result["person_id"]),
            "restored": profile(token.workspace_id, result["restored_person_id"]),
        }

    @get("/accounts", sync_to_thread=True, summary="Accounts, most recently seen first")
    def list_accounts(token: _Auth, limit: _Limit = 50, cursor: _Text = None) -> dict[str, Any]:
        return read.list_accounts(store, token.workspace_id, limit=limit, cursor=cursor)

    @get("/accounts/{group_id:str}", sync_to_thread=True, summary="An account and its members")
    def get_account(token: _Auth, group_id: FromPath[str]) -> dict[str, Any]:
        return read.account_json(store, token.workspace_id, group_id)

    @get("/accounts/{group_id:str}/timeline", sync_to_thread=True, summary="An account's timeline")
    def get_account_timeline(
        token: _Auth,
        group_id: FromPath[str],
        limit: _PageLimit = 50,
        cursor: _Text = None,
        types: _Text = None,
        events: _Text = None,
        since: _Text = None,
        until: _Text = None,
    ) -> dict[str, Any]:
        read.account_json(store, token.workspace_id, group_id)  # 404 for an unknown account
        query = TimelineQuery.parse(
            limit=limit, cursor=cursor, types=types, events=events, since=since, until=until
        )
        return account_timeline(store, token.workspace_id, group_id, query)

    @get("/pipeline", sync_to_thread=True, summary="The pipeline's cursor, lag and dead letters")
    def pipeline_status(token: _Auth) -> dict[str, Any]:
        status = pipeline.status(running_here=bool(runner and runner.holding))
        body: dict[str, Any] = msgspec.to_builtins(status)
        body["updated_at"] = format_ms(status.updated_ms) if status.updated_ms else None
        body["totals"] = msgspec.to_builtins(pipeline.totals)
        return body

    @get("/pipeline/dead-letters", sync_to_thread=True, summary="Events a stage failed on")
    def dead_letters(token: _Auth, limit: _Limit = 100, resolved: _Flag = False) -> dict[str, Any]:
        letters = pipeline.dead_letters(token.workspace_id, include_resolved=resolved, limit=limit)
        return {
            "data": [
                {
                    "id": d.id,
                    "seq": d.seq,
                    "stage": d.stage,
                    "error": d.error,
                    "attempts": d.attempts,
                    "at": format_ms(d.at_ms),
                    "resolved_at": format_ms(d.resolved_ms) if d.resolved_ms else None,
                }
                for d in letters
            ]
        }

    @post(
        "/pipeline/dead-letters/replay",
        sync_to_thread=True,
        status_code=200,
        summary="Run dead letters through the stages again",
    )
    def replay(token: _Auth, data: JSONBody[ReplayIn]) -> dict[str, Any]:
        return pipeline.replay_dead_letters(token.workspace_id, data.ids)

    return Router(
        path="/api/v1",
        route_handlers=[
            list_people,
            lookup,
            get_person,
            get_timeline,
            post_unmerge,
            list_accounts,
            get_account,
            get_account_timeline,
            pipeline_status,
            dead_letters,
            replay,
        ],
        dependencies={"token": Provide(token, sync_to_thread=True)},
        tags=["people"],
    )


def metrics_route(storage: Storage, pipeline: Pipeline) -> Any:
    """Prometheus text: the pipeline's lag and counters (admin token required)."""

    @get("/metrics", sync_to_thread=True, include_in_schema=False)
    def metrics(request: Request[Any, Any, Any]) -> Response[str]:
        authenticate(storage, bearer(request))
        status = pipeline.status()
        totals = pipeline.totals
        lines = [
            "# HELP cairn_pipeline_lag_events Log entries not yet processed by the pipeline.",
            "# TYPE cairn_pipeline_lag_events gauge",
            f"cairn_pipeline_lag_events {status.lag_events}",
            "# HELP cairn_pipeline_lag_seconds Age of the oldest unprocessed log entry.",
            "# TYPE cairn_pipeline_lag_seconds gauge",
            f"cairn_pipeline_lag_seconds {status.lag_seconds}",
            "# HELP cairn_pipeline_cursor Sequence number the pipeline has processed up to.",
            "# TYPE cairn_pipeline_cursor gauge",
            f"cairn_pipeline_cursor {status.cursor}",
            "# HELP cairn_pipeline_dead_letters Open dead letters.",
            "# TYPE cairn_pipeline_dead_letters gauge",
            f"cairn_pipeline_dead_letters {status.dead_letters}",
            "# HELP cairn_pipeline_events_total Events applied by this process.",
            "# TYPE cairn_pipeline_events_total counter",
            f"cairn_pipeline_events_total {totals.events}",
            "# TYPE cairn_pipeline_merges_total counter",
            f"cairn_pipeline_merges_total {totals.merges}",
            "# TYPE cairn_pipeline_merges_refused_total counter",
            f"cairn_pipeline_merges_refused_total {totals.merges_refused}",
            "# TYPE cairn_pipeline_identifiers_refused_total counter",
            f"cairn_pipeline_identifiers_refused_total {totals.identifiers_refused}",
            "# TYPE cairn_pipeline_stale_batches_total counter",
            f"cairn_pipeline_stale_batches_total {pipeline.stale_batches}",
        ]
        return Response("\n".join(lines) + "\n", media_type=MediaType.TEXT + "; version=0.0.4")

    return metrics
