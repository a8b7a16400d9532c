"""Automations, their runs and webhook deliveries under `/api/v1` (docs/automations.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from cairn.automations.reports import list_runs, run_json
from cairn.automations.store import Automations
from cairn.automations.webhooks import (
    get_delivery,
    list_deliveries,
    replay_delivery,
    workspace_secret,
)
from cairn.storage.base import Token
from cairn.storage.people import PeopleStore
from cairn.storage.sql import SQLStorage
from cairn.web.api import bearer
from cairn.web.errors import path_id
from cairn.workspaces import authenticate

__all__ = ["automations_router"]

_Auth = NamedDependency[Token]
_Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
_Text = Annotated[str | None, QueryParameter()]


class StateIn(msgspec.Struct, forbid_unknown_fields=True):
    state: str


def _id(raw: str, what: str) -> int:
    return path_id(raw, f"no {what} {{raw!r}}")


def automations_router(storage: SQLStorage, wake: Callable[[], None] | None = None) -> Router:
    """The routes; `wake` tells the engine there is new work (a state change, a replay)."""
    store = PeopleStore(storage)
    automations = Automations(store)
    nudge = wake or (lambda: None)

    def token(request: Request[Any, Any, Any]) -> Token:
        return authenticate(storage, bearer(request))

    def one(token: Token, raw: str) -> dict[str, Any]:
        found = automations.get(token.workspace_id, _id(raw, "automation"))
        return found.json(automations.counts(found.id))

    @get("/automations", sync_to_thread=True, summary="Automations with their run counts")
    def list_automations(token: _Auth) -> dict[str, Any]:
        return {
            "data": [a.json(automations.counts(a.id)) for a in automations.all(token.workspace_id)]
        }

    @post("/automations", sync_to_thread=True, status_code=201, summary="Create an automation")
    def create(token: _Auth, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        made = automations.create(token.workspace_id, data)
        nudge()
        return made.json(automations.counts(made.id))

    @get("/automations/{automation_id:str}", sync_to_thread=True, summary="An automation")
    def get_automation(token: _Auth, automation_id: FromPath[str]) -> dict[str, Any]:
        return one(token, automation_id)

    @put(
        "/automations/{automation_id:str}",
        sync_to_thread=True,
        summary="Replace the definition (a new version when it changed)",
    )
    def replace(
        token: _Auth, automation_id: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        automations.update(token.workspace_id, _id(automation_id, "automation"), data)
        nudge()
        return one(token, automation_id)

    @post(
        "/automations/{automation_id:str}/state",
        sync_to_thread=True,
        status_code=200,
        summary="Set the state: draft, live or paused",
    )
    def set_state(
        token: _Auth, automation_id: FromPath[str], data: JSONBody[StateIn]
    ) -> dict[str, Any]:
        automations.set_state(token.workspace_id, _id(automation_id, "automation"), data.state)
        nudge()
        return one(token, automation_id)

    @delete("/automations/{automation_id:str}", sync_to_thread=True, status_code=204)
    def remove(token: _Auth, automation_id: FromPath[str]) -> Response[None]:
        automations.delete(token.workspace_id, _id(automation_id, "automation"))
        return Response(None, status_code=204)

    @get("/automations/{automation_id:str}/versions", sync_to_thread=True, summary="Versions")
    def versions(token: _Auth, automation_id: FromPath[str]) -> dict[str, Any]:
        aid = _id(automation_id, "automation")
        return {"data": automations.versions(token.workspace_id, aid)}

    @get(
        "/automations/{automation_id:str}/runs",
        sync_to_thread=True,
        summary="Runs, newest first, with steps, outcomes and delivery attempts",
    )
    def runs(
        token: _Auth,
        automation_id: FromPath[str],
        run_state: Annotated[str | None, QueryParameter(name="state")] = None,
        person_id: Annotated[int | None, QueryParameter()] = None,
        limit: _Limit = 50,
        cursor: _Text = None,
    ) -> dict[str, Any]:
        found = automations.get(token.workspace_id, _id(automation_id, "automation"))
        page = list_runs(
            store, found.id, state=run_state, person_id=person_id, limit=limit, cursor=cursor
        )
        return {**page, "counts": automations.counts(found.id)}

    @get("/automations/{automation_id:str}/runs/{run_id:str}", sync_to_thread=True)
    def run(token: _Auth, automation_id: FromPath[str], run_id: FromPath[str]) -> dict[str, Any]:
        found = automations.get(token.workspace_id, _id(automation_id, "automation"))
        return run_json(store, found.id, _id(run_id, "run"))

    @get(
        "/deliveries", sync_to_thread=True, summary="Webhook deliveries (status=dead: dead letters)"
    )
    def deliveries(
        token: _Auth, status: _Text = None, limit: _Limit = 100, cursor: _Text = None
    ) -> dict[str, Any]:
        after = _id(cursor, "cursor") if cursor else 0
        data = list_deliveries(store, token.workspace_id, status=status, limit=limit, after=after)
        return {"data": data, "next_cursor": str(data[-1]["id"]) if len(data) == limit else None}

    @get("/deliveries/{delivery_id:str}", sync_to_thread=True, summary="A delivery and attempts")
    def delivery(token: _Auth, delivery_id: FromPath[str]) -> dict[str, Any]:
        return get_delivery(store, token.workspace_id, _id(delivery_id, "delivery"))

    @post(
        "/deliveries/{delivery_id:str}/replay",
        sync_to_thread=True,
        status_code=200,
        summary="Send a dead delivery again",
    )
    def replay(token: _Auth, delivery_id: FromPath[str]) -> dict[str, Any]:
        found = replay_delivery(store, token.workspace_id, _id(delivery_id, "delivery"))
        nudge()
        return found

    @get("/webhooks/secret", sync_to_thread=True, summary="The workspace's webhook signing secret")
    def secret(token: _Auth) -> dict[str, Any]:
        return {"secret": workspace_secret(store, token.workspace_id)}

    return Router(
        path="/api/v1",
        route_handlers=[
            list_automations,
            create,
            get_automation,
            replace,
            set_state,
            remove,
            versions,
            runs,
            run,
            deliveries,
            delivery,
            replay,
            secret,
        ],
        dependencies={"token": Provide(token, sync_to_thread=True)},
        tags=["automations"],
    )
