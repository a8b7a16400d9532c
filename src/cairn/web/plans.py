"""Tracking plans under `/api/v1`: install per source, versions, the violations report, the
quarantine and its replay, and the workspace's naming settings (docs/plans.md)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Router, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from cairn.errors import BadRequest, InvalidBody
from cairn.ids import parse_int
from cairn.ingest.timestamps import parse_ms
from cairn.log.wakeup import PipelineRunner
from cairn.pipeline.runner import Pipeline
from cairn.plans.naming import RULES
from cairn.plans.plan import PlanError, plan_from_json
from cairn.plans.store import naming_from_json, naming_to_json
from cairn.storage.base import Storage, Token
from cairn.web.api import bearer
from cairn.workspaces import authenticate

__all__ = ["plans_router"]

_Auth = NamedDependency[Token]
_Text = Annotated[str | None, QueryParameter()]
_Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
_MAX_PLAN_BYTES = 2 * 1024 * 1024


class ReplayIn(msgspec.Struct, forbid_unknown_fields=True):
    seqs: list[int] | None = None


async def _document(request: Request[Any, Any, Any]) -> Any:
    """The request body as a plan document: JSON, or YAML (`Content-Type: application/yaml`)."""
    body = await request.body()
    if len(body) > _MAX_PLAN_BYTES:
        raise InvalidBody(f"a plan is at most {_MAX_PLAN_BYTES} bytes")
    kind = request.headers.get("content-type", "application/json").lower()
    try:
        if "yaml" in kind:
            import yaml

            return yaml.safe_load(body.decode("utf-8"))
        return msgspec.json.decode(body)
    except Exception as exc:  # any parse failure is the client's
        raise InvalidBody(
            f"the plan is not valid {'YAML' if 'yaml' in kind else 'JSON'}: {exc}"
        ) from None


def plans_router(storage: Storage, pipeline: Pipeline, runner: PipelineRunner | None) -> Router:
    plans = pipeline.plans

    def token(request: Request[Any, Any, Any]) -> Token:
        return authenticate(storage, bearer(request))

    @put("/sources/{source_id:str}/plan", status_code=200, summary="Install a tracking plan")
    async def install(
        token: _Auth, source_id: FromPath[str], request: Request[Any, Any, Any]
    ) -> Any:
        document = await _document(request)
        if not isinstance(document, dict):
            raise InvalidBody("a plan is an object")
        try:
            plan = plan_from_json(document, source="<request>")
        except PlanError as exc:
            raise BadRequest(str(exc), code="invalid_plan") from None
        import anyio

        return await anyio.to_thread.run_sync(plans.install, token.workspace_id, source_id, plan)

    @get(
        "/sources/{source_id:str}/plan",
        sync_to_thread=True,
        summary="The active plan (or a version)",
    )
    def show(
        token: _Auth,
        source_id: FromPath[str],
        version: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Any:
        return plans.plan(token.workspace_id, source_id, version)

    @get("/sources/{source_id:str}/plan/versions", sync_to_thread=True, summary="Plan versions")
    def versions(token: _Auth, source_id: FromPath[str]) -> Any:
        return {"data": plans.versions(token.workspace_id, source_id)}

    @delete("/sources/{source_id:str}/plan", sync_to_thread=True, status_code=204)
    def remove(token: _Auth, source_id: FromPath[str]) -> None:
        plans.remove(token.workspace_id, source_id)

    @get(
        "/plans/violations",
        sync_to_thread=True,
        summary="Violations grouped by event, rule and property",
    )
    def violations(
        token: _Auth, source: _Text = None, since: _Text = None, limit: _Limit = 500
    ) -> Any:
        since_ms = None
        if since:
            since_ms = parse_int(since)
            if since_ms is None:
                since_ms = parse_ms(since)
            if since_ms is None:
                raise BadRequest("since is ISO 8601 or epoch milliseconds", code="invalid_time")
        return {
            "data": plans.violations(
                token.workspace_id, source_id=source, since_ms=since_ms, limit=limit
            )
        }

    @get("/plans/quarantine", sync_to_thread=True, summary="Blocked events")
    def quarantine(token: _Auth, limit: _Limit = 100, cursor: _Text = None) -> Any:
        after = 0
        if cursor:
            found = parse_int(cursor)
            if found is None:
                raise BadRequest(f"invalid cursor {cursor!r}", code="invalid_cursor")
            after = found
        return plans.quarantine(token.workspace_id, limit=limit, after=after)

    @post(
        "/plans/quarantine/replay",
        sync_to_thread=True,
        status_code=200,
        summary="Check blocked events again",
    )
    def replay(token: _Auth, data: JSONBody[ReplayIn]) -> Any:
        result = pipeline.replay_quarantine(token.workspace_id, data.seqs)
        if runner is not None:
            runner.wake()
        return result

    @get("/plans/naming", sync_to_thread=True, summary="Naming-rule settings and the rules")
    def naming(token: _Auth) -> Any:
        rules = [
            {"id": rule, "severity": sev, "description": text}
            for rule, (sev, text) in sorted(RULES.items())
        ]
        return {"settings": naming_to_json(plans.naming(token.workspace_id)), "rules": rules}

    @put(
        "/plans/naming",
        sync_to_thread=True,
        status_code=200,
        summary="Set naming exceptions, verbs, severities",
    )
    def set_naming(token: _Auth, data: JSONBody[dict[str, Any]]) -> Any:
        unknown = set(data) - {"exceptions", "extra_verbs", "severity"}
        if unknown:
            raise InvalidBody(f"unknown key {sorted(unknown)[0]!r}")
        for key in ("exceptions", "extra_verbs"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidBody(f"{key} is a list of strings")
        severity = data.get("severity", {})
        if not isinstance(severity, dict):
            raise InvalidBody("severity maps rule ids to error, warning, info or off")
        for rule, level in severity.items():
            if rule not in RULES or level not in ("error", "warning", "info", "off"):
                raise InvalidBody(f"severity: unknown rule {rule!r} or level {level!r}")
        config = naming_from_json(data)
        plans.set_naming(token.workspace_id, config)
        return {"settings": naming_to_json(config)}

    return Router(
        path="/api/v1",
        route_handlers=[
            install,
            show,
            versions,
            remove,
            violations,
            quarantine,
            replay,
            naming,
            set_naming,
        ],
        dependencies={"token": Provide(token, sync_to_thread=True)},
        tags=["plans"],
    )
