"""SQL text shared by the backends. Values are always parameters, never spliced into the text."""

from __future__ import annotations

from typing import Any

from cairn.storage.base import EventQuery

__all__ = ["EVENT_COLUMNS", "event_filters", "event_listing", "log_page", "statements"]

EVENT_COLUMNS = (
    "e.seq, e.workspace_id, e.source_id, e.message_id, e.type, e.event, e.user_id, "
    "e.anonymous_id, e.timestamp_ms, e.received_ms, e.body"
)
_FILTER_COLUMNS = ("type", "event", "user_id", "anonymous_id", "source_id")


def event_filters(workspace_id: int, query: EventQuery, mark: str) -> tuple[str, list[Any]]:
    """WHERE clause over `events e` for `query`, with `mark` as the placeholder (`?` or `%s`)."""
    clauses = [f"e.workspace_id = {mark}"]
    params: list[Any] = [workspace_id]
    if query.before_seq is not None:
        clauses.append(f"e.seq < {mark}")
        params.append(query.before_seq)
    if query.after_seq is not None:
        clauses.append(f"e.seq > {mark}")
        params.append(query.after_seq)
    for column in _FILTER_COLUMNS:
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"e.{column} = {mark}")
            params.append(value)
    return " AND ".join(clauses), params


def statements(script: str) -> list[str]:
    """The statements of a migration script (`;`-separated, `--` comments dropped)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def log_page(after_seq: int, limit: int, mark: str) -> tuple[str, list[Any]]:
    """The consumers' read: events after a cursor, in sequence order, across workspaces."""
    sql = f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.seq > {mark} ORDER BY e.seq LIMIT {mark}"
    return sql, [after_seq, limit]


def event_listing(workspace_id: int, query: EventQuery, mark: str) -> tuple[str, list[Any], bool]:
    """SQL, parameters, and whether to reverse the rows, for a newest-first listing.

    With only a lower bound (`after_seq`), the `limit` events just after it are read oldest first,
    so paging towards newer events never skips any, and reversed to newest first.
    """
    where, params = event_filters(workspace_id, query, mark)
    ascending = query.after_seq is not None and query.before_seq is None
    order = "ASC" if ascending else "DESC"
    sql = (
        f"SELECT {EVENT_COLUMNS} FROM events e WHERE {where} "
        f"ORDER BY e.workspace_id {order}, e.seq {order} LIMIT {mark}"
    )
    return sql, [*params, query.limit], ascending
