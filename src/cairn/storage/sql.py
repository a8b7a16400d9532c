"""SQL text shared by the backends. Values are always parameters, never spliced into the text."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from cairn.errors import Conflict, NotFound
from cairn.ingest.timestamps import now_ms
from cairn.storage.base import (
    EventQuery,
    LogEntry,
    RejectedEntry,
    Source,
    Storage,
    Token,
    Workspace,
)

__all__ = [
    "EVENT_COLUMNS",
    "SOURCE_COLUMNS",
    "Params",
    "SQLStorage",
    "event_filters",
    "event_listing",
    "log_page",
    "source_from_row",
    "statements",
]

# Positional (`?` / `%s`) or named (`:name` / `%(name)s`) query parameters.
Params = Sequence[Any] | Mapping[str, Any]

SOURCE_COLUMNS = (
    "id, workspace_id, name, write_key, enabled, created_ms, identity_secret, require_user_hash"
)

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
    """The statements of a migration script: `;`-separated, `--` comment lines dropped, and
    dollar-quoted bodies (`$fn$ ... $fn$`, PostgreSQL functions) kept whole."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    text = "\n".join(lines)
    found: list[str] = []
    start = position = 0
    while position < len(text):
        if text[position] == "$" and (tag := _DOLLAR.match(text, position)):
            end = text.find(tag.group(0), tag.end())
            position = len(text) if end < 0 else end + len(tag.group(0))
            continue
        if text[position] == ";":
            found.append(text[start:position])
            start = position + 1
        position += 1
    found.append(text[start:])
    return [s.strip() for s in found if s.strip()]


_DOLLAR = re.compile(r"\$[A-Za-z_]*\$")


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


def source_from_row(row: Sequence[Any]) -> Source:
    source_id, workspace_id, name, write_key, enabled, created_ms, secret, require = row
    return Source(
        source_id, workspace_id, name, write_key, bool(enabled), created_ms, secret, bool(require)
    )


class SQLStorage(Storage):
    """The reads both SQL backends share; each backend supplies `_rows` and its placeholder."""

    mark: str

    @abstractmethod
    def _rows(self, sql: str, params: Params = ()) -> list[Any]: ...

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A connection inside a write transaction, committed on exit."""

    def flag(self, value: bool) -> bool | int:
        """`value` as a parameter for a boolean column: PostgreSQL's `boolean`, SQLite's 0/1."""
        return value if self.dialect == "postgres" else int(value)

    def _sql(self, text: str) -> str:
        return text.replace("{p}", self.mark)

    # For the derived-state stores (`cairn.storage.people`), which keep their own SQL.
    def rows(self, sql: str, params: Params = ()) -> list[Any]:
        return self._rows(sql, params)

    def transaction(self) -> AbstractContextManager[Any]:
        """A connection inside a write transaction, committed on exit, rolled back on error."""
        return self._write()

    def read_log(self, after_seq: int, limit: int) -> list[LogEntry]:
        return [LogEntry(*row) for row in self._rows(*log_page(after_seq, limit, self.mark))]

    def last_seq(self) -> int:
        return int(self._rows("SELECT coalesce(max(seq), 0) FROM events")[0][0])

    def query_events(self, workspace_id: int, query: EventQuery) -> list[LogEntry]:
        sql, params, reverse = event_listing(workspace_id, query, self.mark)
        entries = [LogEntry(*row) for row in self._rows(sql, params)]
        return entries[::-1] if reverse else entries

    def count_events(self, workspace_id: int) -> int:
        # Kept by each append (table `workspace_counts`): no scan of the log.
        sql = self._sql("SELECT events FROM workspace_counts WHERE workspace_id = {p}")
        rows = self._rows(sql, (workspace_id,))
        return int(rows[0][0]) if rows else 0

    def get_cursor(self, name: str) -> int:
        rows = self._rows(self._sql("SELECT position FROM cursors WHERE name = {p}"), (name,))
        return int(rows[0][0]) if rows else 0

    def commit_cursor(self, name: str, position: int) -> None:
        sql = self._sql(
            "INSERT INTO cursors (name, position, updated_ms) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
            "updated_ms = excluded.updated_ms"
        )
        with self._write() as conn:
            conn.execute(sql, (name, position, now_ms()))

    def list_rejected(
        self, workspace_id: int, *, before_id: int | None, limit: int
    ) -> list[RejectedEntry]:
        sql = self._sql(
            "SELECT id, workspace_id, source_id, received_ms, code, message, body FROM rejected "
            "WHERE workspace_id = {p} AND id < {p} ORDER BY workspace_id DESC, id DESC LIMIT {p}"
        )
        before = before_id if before_id is not None else 2**62
        return [RejectedEntry(*row) for row in self._rows(sql, (workspace_id, before, limit))]

    def workspace_by_name(self, name: str) -> Workspace | None:
        return self._workspace("name", name)

    def workspace_by_id(self, workspace_id: int) -> Workspace | None:
        return self._workspace("id", workspace_id)

    def _workspace(self, column: str, value: Any) -> Workspace | None:
        sql = self._sql(f"SELECT id, name, created_ms FROM workspaces WHERE {column} = {{p}}")
        rows = self._rows(sql, (value,))
        return Workspace(*rows[0]) if rows else None

    def list_workspaces(self) -> list[Workspace]:
        rows = self._rows("SELECT id, name, created_ms FROM workspaces ORDER BY id")
        return [Workspace(*row) for row in rows]

    def list_sources(self, workspace_id: int) -> list[Source]:
        sql = self._sql(
            f"SELECT {SOURCE_COLUMNS} FROM sources WHERE workspace_id = {{p}} "
            "ORDER BY created_ms, id"
        )
        return [source_from_row(row) for row in self._rows(sql, (workspace_id,))]

    def source_by_write_key(self, write_key: str) -> Source | None:
        return self._source("write_key", write_key)

    def _source(self, column: str, value: Any) -> Source | None:
        sql = self._sql(f"SELECT {SOURCE_COLUMNS} FROM sources WHERE {column} = {{p}}")
        rows = self._rows(sql, (value,))
        return source_from_row(rows[0]) if rows else None

    def set_source_identity(
        self, workspace_id: int, source_id: str, *, secret: str | None, require: bool | None
    ) -> Source:
        with self._write() as conn:
            found = conn.execute(
                self._sql(
                    "SELECT identity_secret FROM sources WHERE id = {p} AND workspace_id = {p}"
                ),
                (source_id, workspace_id),
            ).fetchall()
            if not found:
                raise NotFound(f"no source {source_id!r} in this workspace")
            if secret is not None:
                conn.execute(
                    self._sql("UPDATE sources SET identity_secret = {p} WHERE id = {p}"),
                    (secret, source_id),
                )
            if require is not None:
                if require and secret is None and found[0][0] is None:
                    raise Conflict(
                        "set an identity secret before requiring user_hash",
                        code="no_identity_secret",
                    )
                conn.execute(
                    self._sql("UPDATE sources SET require_user_hash = {p} WHERE id = {p}"),
                    (self.flag(require), source_id),
                )
        source = self._source("id", source_id)
        assert source is not None
        return source

    def token_by_hash(self, token_hash: str) -> Token | None:
        sql = self._sql(
            "SELECT id, workspace_id, label, created_ms FROM tokens WHERE token_hash = {p}"
        )
        rows = self._rows(sql, (token_hash,))
        return Token(*rows[0]) if rows else None
