"""Timelines, newest first: a person's events (of every identifier merged into them) interleaved
with their own history (trait changes, accounts joined, merges, unmerges).

Order is by event time, then events before history entries of the same millisecond, then sequence
number (or history id). The cursor is that key, so pages stay correct while events arrive: a new
event lands before the first page or, if its timestamp is older, in its place in time, and no item
is repeated or skipped across the pages already read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from cairn.errors import BadRequest
from cairn.ids import parse_int
from cairn.ingest.messages import MESSAGE_TYPES
from cairn.ingest.timestamps import format_ms, parse_ms
from cairn.storage.people import PeopleStore, decode_json

__all__ = ["HISTORY_KINDS", "TimelineQuery", "account_timeline", "person_timeline"]

HISTORY_KINDS = (
    "trait_changed",
    "joined_account",
    "merged",
    "merged_into",
    "unmerged",
    "entered_segment",
    "left_segment",
    "automation_entered",
    "automation_completed",
    "automation_converted",
    "automation_exited",
    "automation_failed",
)
_EVENT, _HISTORY = 1, 0
_decode = msgspec.json.decode


@dataclass(frozen=True)
class TimelineQuery:
    limit: int = 50
    cursor: tuple[int, int, int] | None = None
    types: frozenset[str] | None = None
    events: frozenset[str] | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def parse(
        cls,
        *,
        limit: int = 50,
        cursor: str | None = None,
        types: str | None = None,
        events: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> TimelineQuery:
        kinds = _names(types)
        if kinds is not None and (unknown := kinds - set(MESSAGE_TYPES) - set(HISTORY_KINDS)):
            raise BadRequest(
                f"unknown type {sorted(unknown)[0]!r}: use event types "
                f"({', '.join(MESSAGE_TYPES)}) or history kinds ({', '.join(HISTORY_KINDS)})",
                code="invalid_type",
            )
        return cls(
            limit=limit,
            cursor=_cursor(cursor),
            types=kinds,
            events=_names(events),
            since_ms=_time("since", since),
            until_ms=_time("until", until),
        )

    @property
    def wants_events(self) -> bool:
        return self.types is None or bool(self.types & set(MESSAGE_TYPES))

    @property
    def wants_history(self) -> bool:
        if self.types is None:
            return self.events is None
        return bool(self.types & set(HISTORY_KINDS))


def _names(raw: str | None) -> frozenset[str] | None:
    if raw is None or not raw.strip():
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _time(name: str, raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if (number := parse_int(raw, signed=True)) is not None:
        return number
    ms = parse_ms(raw)
    if ms is None:
        raise BadRequest(
            f"{name} must be an ISO-8601 time or epoch milliseconds", code="invalid_time"
        )
    return ms


def _cursor(raw: str | None) -> tuple[int, int, int] | None:
    if not raw:
        return None
    try:
        ts, rank, key = (int(part) for part in raw.split("."))
        if rank not in (_EVENT, _HISTORY):
            raise ValueError
    except ValueError:
        raise BadRequest(f"invalid cursor {raw!r}", code="invalid_cursor") from None
    return ts, rank, key


def _bounds(q: TimelineQuery, ts: str, key: str, rank: int) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if q.since_ms is not None:
        clauses.append(f"{ts} >= ?")
        params.append(q.since_ms)
    if q.until_ms is not None:
        clauses.append(f"{ts} <= ?")
        params.append(q.until_ms)
    if q.cursor is not None:
        c_ts, c_rank, c_key = q.cursor
        if c_rank == rank:
            # a row value, so both backends read it as one index range
            clauses.append(f"({ts}, {key}) < (?, ?)")
            params += [c_ts, c_key]
        elif rank > c_rank:  # this kind sorts before the cursor's within one millisecond
            clauses.append(f"{ts} < ?")
            params.append(c_ts)
        else:
            clauses.append(f"{ts} <= ?")
            params.append(c_ts)
    return clauses, params


def _in(column: str, values: frozenset[str] | None, clauses: list[str], params: list[Any]) -> None:
    if values is not None:
        clauses.append(f"{column} IN ({','.join('?' * len(values))})")
        params += sorted(values)


def _event_item(seq: int, ts: int, body: bytes) -> dict[str, Any]:
    message = _decode(body)
    return {
        "kind": "event",
        "seq": seq,
        "at": format_ms(ts),
        "type": message.get("type"),
        "event": message.get("event"),
        "message": message,
        "_key": (ts, _EVENT, seq),
    }


def _history_item(hid: int, ts: int, kind: str, data: Any, seq: int | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": hid,
        "seq": seq,
        "at": format_ms(ts),
        "data": decode_json(data),
        "_key": (ts, _HISTORY, hid),
    }


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    items.sort(key=lambda item: item["_key"], reverse=True)
    page = items[:limit]
    next_cursor = None
    if len(items) > limit:
        ts, rank, key = page[-1]["_key"]
        next_cursor = f"{ts}.{rank}.{key}"
    for item in page:
        del item["_key"]
    return {"data": page, "next_cursor": next_cursor}


def person_timeline(store: PeopleStore, person_id: int, q: TimelineQuery) -> dict[str, Any]:
    """`person_id` must be the person as it stands now (see `profiles.read.root_of`)."""
    items: list[dict[str, Any]] = []
    if q.wants_events:
        clauses, params = _bounds(q, "pe.timestamp_ms", "pe.seq", _EVENT)
        _in("pe.type", q.types and q.types & set(MESSAGE_TYPES), clauses, params)
        _in("pe.event", q.events, clauses, params)
        where = " AND ".join(["pe.person_id = ?", *clauses])
        rows = store.rows(
            f"SELECT pe.seq, pe.timestamp_ms, e.body FROM person_events pe "
            f"JOIN events e ON e.seq = pe.seq WHERE {where} "
            "ORDER BY pe.timestamp_ms DESC, pe.seq DESC LIMIT ?",
            (person_id, *params, q.limit + 1),
        )
        items += [_event_item(seq, ts, bytes(body)) for seq, ts, body in rows]
    if q.wants_history:
        clauses, params = _bounds(q, "h.at_ms", "h.id", _HISTORY)
        _in("h.kind", q.types and q.types & set(HISTORY_KINDS), clauses, params)
        where = " AND ".join(["h.person_id = ?", *clauses])
        rows = store.rows(
            f"SELECT h.id, h.at_ms, h.kind, h.data, h.seq FROM person_history h WHERE {where} "
            "ORDER BY h.at_ms DESC, h.id DESC LIMIT ?",
            (person_id, *params, q.limit + 1),
        )
        items += [_history_item(*row) for row in rows]
    return _page(items, q.limit)


def account_timeline(
    store: PeopleStore, workspace_id: int, group_id: str, q: TimelineQuery
) -> dict[str, Any]:
    """The members' events and the account's own (group calls, events with context.groupId)."""
    if not q.wants_events:
        return {"data": [], "next_cursor": None}
    member_clauses, member_params = _bounds(q, "pe.timestamp_ms", "pe.seq", _EVENT)
    own_clauses, own_params = _bounds(q, "ae.timestamp_ms", "ae.seq", _EVENT)
    member_where = " AND ".join(
        ["pe.person_id IN (SELECT person_id FROM account_members WHERE workspace_id = ? "
         "AND group_id = ?)", *member_clauses]
    )  # fmt: skip
    own_where = " AND ".join(["ae.workspace_id = ? AND ae.group_id = ?", *own_clauses])
    filters: list[str] = []
    filter_params: list[Any] = []
    _in("e.type", q.types and q.types & set(MESSAGE_TYPES), filters, filter_params)
    _in("e.event", q.events, filters, filter_params)
    outer = (" WHERE " + " AND ".join(filters)) if filters else ""
    rows = store.rows(
        "SELECT x.seq, x.ts, e.body FROM ("
        f"SELECT pe.seq AS seq, pe.timestamp_ms AS ts FROM person_events pe WHERE {member_where} "
        f"UNION SELECT ae.seq, ae.timestamp_ms FROM account_events ae WHERE {own_where}"
        f") x JOIN events e ON e.seq = x.seq{outer} ORDER BY x.ts DESC, x.seq DESC LIMIT ?",
        (workspace_id, group_id, *member_params, workspace_id, group_id, *own_params,
         *filter_params, q.limit + 1),
    )  # fmt: skip
    return _page([_event_item(seq, ts, bytes(body)) for seq, ts, body in rows], q.limit)
