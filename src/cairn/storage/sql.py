"""SQL text shared by the backends. Values are always parameters, never spliced into the text."""

from __future__ import annotations

from typing import Any

from cairn.storage.base import EventQuery

__all__ = ["event_filters", "statements"]

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
