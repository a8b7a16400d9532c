"""The collector: one request in, durable events and per-message rejections out.

Used by the HTTP routes (`cairn.ingest.routes`); usable alone for imports and tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cairn.errors import BadRequest, CairnError, PayloadTooLarge
from cairn.identity.rules import verify_user_hash
from cairn.ingest.auth import write_key_from_body, write_key_from_headers
from cairn.ingest.decode import Payload, decode_body, decompress
from cairn.ingest.messages import (
    EventRecord,
    RejectedRecord,
    Rejection,
    RequestInfo,
    normalize,
    rejected_record,
)
from cairn.ingest.timestamps import now_ms
from cairn.log.writer import LogWriter
from cairn.settings import Settings
from cairn.storage.base import Source
from cairn.workspaces import SourceCache

__all__ = ["Collector", "IncomingRequest"]

_KEPT_BYTES = 65536


@dataclass(slots=True)
class IncomingRequest:
    body: bytes
    headers: Mapping[str, str]
    client_ip: str | None
    batch: bool
    message_type: str | None = None


class Collector:
    def __init__(self, writer: LogWriter, sources: SourceCache, settings: Settings) -> None:
        self._writer = writer
        self._sources = sources
        self._settings = settings

    async def collect(self, request: IncomingRequest) -> dict[str, Any]:
        """Store the request's valid messages durably; the JSON answer for the client."""
        received = now_ms()
        try:
            data = decompress(
                request.body,
                request.headers.get("content-encoding"),
                self._settings.max_request_bytes,
            )
            payload = decode_body(data, batch=request.batch)
        except (BadRequest, PayloadTooLarge) as exc:
            await self._record_refused_request(request, exc, received)
            raise
        source = await self.source_for(request.headers, payload)
        info = self._request_info(request, payload, source, received)
        events, rejected, rejections = self._normalize_all(
            payload, info, request.message_type, source
        )
        if events or rejected:
            await self._writer.append(events, rejected)
        answer: dict[str, Any] = {"success": True}
        if rejections:
            answer["rejected"] = rejections
        return answer

    async def source_for(self, headers: Mapping[str, str], payload: Payload | None) -> Source:
        key = write_key_from_headers(headers)
        if key is None and payload is not None:
            key = write_key_from_body(payload.envelope, payload.items)
        return await self.source_by_key(key)

    async def source_by_key(self, key: str | None) -> Source:
        source = None
        if key:
            hit, source = self._sources.cached(key)
            if not hit:
                source = await asyncio.to_thread(self._sources.load, key)
        return SourceCache.check(key, source)

    async def _record_refused_request(
        self, request: IncomingRequest, error: CairnError, received: int
    ) -> None:
        """List a request that could not be read at all, when its headers name a source."""
        key = write_key_from_headers(request.headers)
        if key is None:
            return
        try:
            source = await self.source_by_key(key)
            entry = RejectedRecord(
                source.workspace_id,
                source.id,
                received,
                error.code,
                f"request: {error.message}",
                request.body[:_KEPT_BYTES],
            )
            await self._writer.append([], [entry])
        except CairnError:
            return  # unknown key, or the writer is overloaded: the client got its error anyway

    def _request_info(
        self, request: IncomingRequest, payload: Payload, source: Source, received: int
    ) -> RequestInfo:
        envelope = payload.envelope
        context = envelope.get("context") if request.batch else None
        integrations = envelope.get("integrations") if request.batch else None
        sent_at = envelope.get("sentAt") if request.batch else None
        return RequestInfo(
            workspace_id=source.workspace_id,
            source_id=source.id,
            received_ms=received,
            ip=request.client_ip,
            user_agent=request.headers.get("user-agent"),
            browser=_is_browser(request.headers),
            sent_at=sent_at if isinstance(sent_at, str) else None,
            context=context if isinstance(context, dict) else None,
            integrations=integrations if isinstance(integrations, dict) else None,
            max_message_bytes=self._settings.max_message_bytes,
        )

    def _normalize_all(
        self, payload: Payload, info: RequestInfo, message_type: str | None, source: Source
    ) -> tuple[list[EventRecord], list[RejectedRecord], list[Rejection]]:
        events: list[EventRecord] = []
        rejected: list[RejectedRecord] = []
        rejections: list[Rejection] = []
        limit = self._settings.max_batch_messages
        for index, raw in enumerate(payload.items):
            if index >= limit:
                outcome: EventRecord | Rejection = Rejection(
                    index, "batch_too_large", f"a batch holds at most {limit} messages"
                )
            else:
                outcome = normalize(raw, index, info, message_type)
                if source.require_user_hash and isinstance(outcome, EventRecord):
                    outcome = _verified(raw, index, outcome, source, info)
            if isinstance(outcome, EventRecord):
                events.append(outcome)
            else:
                rejections.append(outcome)
                rejected.append(rejected_record(raw, outcome, info))
        return events, rejected, rejections


def _verified(
    raw: Any, index: int, record: EventRecord, source: Source, info: RequestInfo
) -> EventRecord | Rejection:
    """On a source that requires identity verification, an identify must prove its userId with
    `user_hash` = hex(HMAC-SHA256(secret, userId)), in `context.user_hash` or `traits.user_hash`."""
    if record.type != "identify" or record.user_id is None or not source.identity_secret:
        return record
    sent = None
    for section in ("context", "traits"):
        value = raw.get(section) if isinstance(raw, dict) else None
        if isinstance(value, dict) and value.get("user_hash") is not None:
            sent = value["user_hash"]
            break
    if sent is None and info.context is not None:
        sent = info.context.get("user_hash")
    if sent is None:
        return Rejection(
            index, "user_hash_missing",
            "this source requires identity verification: send context.user_hash = "
            "hex(HMAC-SHA256(identity secret, userId)) with identify",
        )  # fmt: skip
    if not verify_user_hash(source.identity_secret, record.user_id, sent):
        return Rejection(
            index, "user_hash_invalid",
            "user_hash does not match userId: it must be hex(HMAC-SHA256(identity secret, userId))",
        )  # fmt: skip
    return record


def _is_browser(headers: Mapping[str, str]) -> bool:
    if headers.get("origin"):
        return True
    return headers.get("content-type", "").lower().startswith("text/plain")
