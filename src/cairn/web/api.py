"""The admin JSON API under `/api/v1`. Every route is scoped to the bearer token's workspace."""

from __future__ import annotations

import os
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from cairn.errors import BadRequest, InvalidBody
from cairn.ingest.messages import MAX_DEPTH, MESSAGE_TYPES, depth
from cairn.ingest.timestamps import format_ms
from cairn.log.writer import LogWriter
from cairn.storage.base import EventQuery, LogEntry, RejectedEntry, Source, Storage, Token
from cairn.workspaces import authenticate, create_source, new_identity_secret

__all__ = ["SESSION_COOKIE", "api_router", "event_json", "rejected_json", "source_json"]

SESSION_COOKIE = "cairn_session"
_decode = msgspec.json.decode


class SourceIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class SourcePatch(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool | None = None
    require_user_hash: bool | None = None


def bearer(request: Request[Any, Any, Any]) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE)


def event_json(entry: LogEntry) -> dict[str, Any]:
    try:
        message: dict[str, Any] = _decode(entry.body)
    except (msgspec.DecodeError, RecursionError):
        # Stored before the nesting limit existed, or by hand: show it rather than fail the page.
        message = {"messageId": entry.message_id, "type": entry.type, "event": entry.event,
                   "userId": entry.user_id, "anonymousId": entry.anonymous_id,
                   "unreadable": entry.body.decode("utf-8", "replace")}  # fmt: skip
    message["seq"] = entry.seq
    message["sourceId"] = entry.source_id
    return message


def rejected_json(entry: RejectedEntry) -> dict[str, Any]:
    try:
        body: Any = _decode(entry.body)
        if depth(body) > MAX_DEPTH:
            body = entry.body.decode("utf-8", "replace")
    except (msgspec.DecodeError, RecursionError):
        body = entry.body.decode("utf-8", "replace")
    return {
        "id": entry.id,
        "source_id": entry.source_id,
        "received_at": format_ms(entry.received_ms),
        "code": entry.code,
        "message": entry.message,
        "body": body,
    }


def source_json(source: Source) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "write_key": source.write_key,
        "enabled": source.enabled,
        "created_at": format_ms(source.created_ms),
        "require_user_hash": source.require_user_hash,
        "identity_secret_set": source.identity_secret is not None,
    }


_Auth = NamedDependency[Token]
_Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
_Text = Annotated[str | None, QueryParameter()]


def _cursor(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"invalid cursor {value!r}", code="invalid_cursor") from None
    if not 0 <= number < 2**62:
        raise BadRequest(f"invalid cursor {value!r}", code="invalid_cursor")
    return number


def api_router(storage: Storage, writer: LogWriter) -> Router:
    def token(request: Request[Any, Any, Any]) -> Token:
        return authenticate(storage, bearer(request))

    @get("/events", sync_to_thread=True, summary="Events, newest first")
    def list_events(
        token: _Auth,
        limit: _Limit = 50,
        cursor: _Text = None,
        after: _Text = None,
        type: _Text = None,
        event: _Text = None,
        user_id: _Text = None,
        anonymous_id: _Text = None,
        source_id: _Text = None,
    ) -> dict[str, Any]:
        if type is not None and type not in MESSAGE_TYPES:
            raise BadRequest(f"type must be one of {', '.join(MESSAGE_TYPES)}", code="invalid_type")
        query = EventQuery(
            limit=limit,
            before_seq=_cursor(cursor),
            after_seq=_cursor(after),
            type=type,
            event=event,
            user_id=user_id,
            anonymous_id=anonymous_id,
            source_id=source_id,
        )
        entries = storage.query_events(token.workspace_id, query)
        next_cursor = str(entries[-1].seq) if len(entries) == limit else None
        return {"data": [event_json(e) for e in entries], "next_cursor": next_cursor}

    @get("/rejected", sync_to_thread=True, summary="Rejected messages with their reasons")
    def list_rejected(token: _Auth, limit: _Limit = 50, cursor: _Text = None) -> dict[str, Any]:
        entries = storage.list_rejected(token.workspace_id, before_id=_cursor(cursor), limit=limit)
        next_cursor = str(entries[-1].id) if len(entries) == limit else None
        return {"data": [rejected_json(e) for e in entries], "next_cursor": next_cursor}

    @get("/sources", sync_to_thread=True, summary="Sources and their write keys")
    def list_sources(token: _Auth) -> dict[str, Any]:
        return {"data": [source_json(s) for s in storage.list_sources(token.workspace_id)]}

    @post("/sources", sync_to_thread=True, status_code=201, summary="Create a source")
    def add_source(token: _Auth, data: JSONBody[SourceIn]) -> dict[str, Any]:
        workspace = storage.workspace_by_id(token.workspace_id)
        assert workspace is not None
        try:
            return source_json(create_source(storage, workspace, data.name))
        except ValueError as exc:
            raise InvalidBody(str(exc)) from None

    @patch(
        "/sources/{source_id:str}",
        sync_to_thread=True,
        summary="Enable or disable a source; require identity verification",
    )
    def change_source(
        token: _Auth, source_id: FromPath[str], data: JSONBody[SourcePatch]
    ) -> dict[str, Any]:
        if data.enabled is None and data.require_user_hash is None:
            raise InvalidBody("give enabled and/or require_user_hash")
        source = None
        if data.enabled is not None:
            source = storage.set_source_enabled(token.workspace_id, source_id, data.enabled)
        if data.require_user_hash is not None:
            source = storage.set_source_identity(
                token.workspace_id, source_id, secret=None, require=data.require_user_hash
            )
        assert source is not None
        return source_json(source)

    @post(
        "/sources/{source_id:str}/identity-secret",
        sync_to_thread=True,
        status_code=201,
        summary="Create or rotate the source's identity-verification secret (shown once)",
    )
    def rotate_secret(token: _Auth, source_id: FromPath[str]) -> dict[str, Any]:
        secret = new_identity_secret()
        source = storage.set_source_identity(
            token.workspace_id, source_id, secret=secret, require=None
        )
        return {**source_json(source), "identity_secret": secret}

    @get("/stats", sync_to_thread=True, summary="Collector and log counters")
    def stats(token: _Auth) -> dict[str, Any]:
        s = writer.stats
        return {
            "events": storage.count_events(token.workspace_id),
            "last_seq": storage.last_seq(),
            # The writer's counters are this process's: with several workers, each has its own.
            "writer": {
                "process": os.getpid(),
                "pending": writer.pending,
                "commits": s.commits,
                "events": s.events,
                "duplicates": s.duplicates,
                "rejected": s.rejected,
                "failures": s.failures,
                "last_commit_ms": round(s.last_commit_ms, 3),
                # Time inside appends (the log's write turn held): over a second of wall time,
                # the share of it this process's writer kept the turn.
                "commit_ms_total": round(s.commit_ms_total, 3),
            },
        }

    return Router(
        path="/api/v1",
        route_handlers=[
            list_events,
            list_rejected,
            list_sources,
            add_source,
            change_source,
            rotate_secret,
            stats,
        ],
        dependencies={"token": Provide(token, sync_to_thread=True)},
        tags=["admin"],
    )
