"""The production backend: PostgreSQL through psycopg 3 and a connection pool.

Appends from any number of processes are serialized by one advisory lock, taken before the end of
the log is read, so `seq` order is commit order and a consumer reading `seq > cursor` never skips an
event. Like SQLite's rowid, `seq` has no gaps: duplicates are dropped before numbering. A batch is
COPYed into a per-connection staging table and moved into the log by one statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from cairn.errors import Conflict, NotFound
from cairn.ingest.messages import EventRecord, RejectedRecord
from cairn.ingest.timestamps import now_ms
from cairn.storage.base import (
    AppendResult,
    Source,
    Token,
    Workspace,
    migration_scripts,
)
from cairn.storage.sql import SOURCE_COLUMNS, Params, SQLStorage, source_from_row, statements

__all__ = ["PostgresStorage"]

_Connection = psycopg.Connection[tuple[Any, ...]]

# Advisory lock keys: the ASCII of a name, so they explain themselves in pg_locks.
_APPEND_LOCK = int.from_bytes(b"cairnlog")
_MIGRATE_LOCK = int.from_bytes(b"cairnmig")
_TURN_LOCK = int.from_bytes(b"cairntrn")

_LOG_COLUMNS = (
    "seq, workspace_id, source_id, message_id, dedupe_bucket, type, event, user_id, anonymous_id, "
    "timestamp_ms, received_ms, body"
)
# A literal, not a parameter: it is sent with other statements in one simple query (`_log_end`).
_LOCK_APPEND = f"SELECT pg_advisory_xact_lock({_APPEND_LOCK})"
_READ_LOG_END = "SELECT coalesce(max(seq), 0) FROM events"
# ON COMMIT DELETE ROWS: the table is created once per connection and is empty between appends.
_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS cairn_staging (position INTEGER, workspace_id BIGINT, "
    "source_id TEXT, message_id TEXT, dedupe_bucket BIGINT, type TEXT, event TEXT, user_id TEXT, "
    "anonymous_id TEXT, timestamp_ms BIGINT, received_ms BIGINT, body BYTEA) ON COMMIT DELETE ROWS"
)
_STAGING_TYPES = (
    "int4", "int8", "text", "text", "int8", "text", "text", "text", "text", "int8", "int8", "bytea"
)  # fmt: skip
# Staged events are new within their batch; those not yet in the log are numbered after its end,
# in batch order, so sequence numbers have no gaps. `OFFSET 0` keeps the check a probe of the
# dedupe index per staged row rather than a join that may scan the whole log.
_MOVE_STAGED = (
    "WITH fresh AS (SELECT %s::bigint + row_number() OVER (ORDER BY s.position) AS seq, s.* "
    "FROM pg_temp.cairn_staging s WHERE NOT EXISTS (SELECT FROM events e "
    "WHERE e.workspace_id = s.workspace_id AND e.dedupe_bucket = s.dedupe_bucket "
    "AND e.message_id = s.message_id OFFSET 0)), "
    f"logged AS (INSERT INTO events ({_LOG_COLUMNS}) SELECT {_LOG_COLUMNS} FROM fresh ORDER BY seq), "
    "counted AS (INSERT INTO workspace_counts (workspace_id, events) "
    "SELECT workspace_id, count(*) FROM fresh GROUP BY workspace_id "
    "ON CONFLICT (workspace_id) DO UPDATE SET events = workspace_counts.events + excluded.events) "
    "SELECT count(*), coalesce(max(seq), 0) FROM fresh"
)
_COPY_REJECTED = (
    "COPY rejected (workspace_id, source_id, received_ms, code, message, body) "
    "FROM STDIN (FORMAT BINARY)"
)
_REJECTED_TYPES = ("int8", "text", "int8", "text", "text", "bytea")


def _configure(conn: _Connection) -> None:
    # Write back the pages this backend evicts as it goes, instead of leaving them dirty in the
    # page cache until the kernel flushes them in bursts of hundreds of MB: a COMMIT's WAL fsync
    # queued behind such a burst stalls for 100 to 400 ms.
    with suppress(psycopg.Error):  # a server without writeback control is only slower
        conn.execute("SET backend_flush_after = '256kB'")


class PostgresStorage(SQLStorage):
    dialect = "postgres"
    mark = "%s"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._pool: ConnectionPool[_Connection] = ConnectionPool(
            url,
            kwargs={"autocommit": True},
            configure=_configure,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name="cairn",
        )
        try:
            self._pool.open(wait=True, timeout=10)
        except BaseException:
            self._pool.close()
            raise

    # connections ----------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[_Connection]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def _rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return conn.execute(sql, params, binary=True).fetchall()

    @contextmanager
    def append_turn(self) -> Iterator[None]:
        """The log writers of several processes (`cairn serve --workers N`) take turns through a
        session advisory lock on a connection of their own, so a writer gathers its batch only
        once the others' commits are done (`append` still takes its own lock inside)."""
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_TURN_LOCK,))
            try:
                yield
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_TURN_LOCK,))
                except psycopg.Error:
                    conn.close()  # never back to the pool holding the lock; closing releases it

    def close(self) -> None:
        self._pool.close()

    def migrate(self) -> int:
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "applied_ms BIGINT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, script in migration_scripts(self.dialect):
                if version in done:
                    continue
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, now_ms()))
                done.add(version)
        return max(done, default=0)

    # the log --------------------------------------------------------------------------------
    def append(
        self,
        events: Sequence[EventRecord],
        rejected: Sequence[RejectedRecord],
        *,
        durable: bool = True,  # every commit waits for its WAL flush (synchronous_commit)
    ) -> AppendResult:
        with self._write() as conn:
            last = _log_end(conn, staging=bool(events))
            inserted = _append_events(conn, events, last=last) if events else 0
            last += inserted
            if rejected:
                _copy_rejected(conn, rejected)
        return AppendResult(inserted=inserted, duplicates=len(events) - inserted, last_seq=last)

    def create_workspace(self, name: str) -> Workspace:
        try:
            rows = self._rows(
                "INSERT INTO workspaces (name, created_ms) VALUES (%s, %s) "
                "RETURNING id, name, created_ms",
                (name, now_ms()),
            )
        except errors.UniqueViolation:
            raise Conflict(f"workspace {name!r} already exists") from None
        return Workspace(*rows[0])

    def create_source(self, workspace_id: int, name: str, source_id: str, write_key: str) -> Source:
        try:
            rows = self._rows(
                "INSERT INTO sources (id, workspace_id, name, write_key, enabled, created_ms) "
                f"VALUES (%s, %s, %s, %s, TRUE, %s) RETURNING {SOURCE_COLUMNS}",
                (source_id, workspace_id, name, write_key, now_ms()),
            )
        except errors.UniqueViolation:
            raise Conflict(f"source {name!r} already exists in this workspace") from None
        except errors.ForeignKeyViolation:
            raise NotFound(f"no workspace {workspace_id}") from None
        return source_from_row(rows[0])

    def set_source_enabled(self, workspace_id: int, source_id: str, enabled: bool) -> Source:
        rows = self._rows(
            "UPDATE sources SET enabled = %s WHERE id = %s AND workspace_id = %s "
            f"RETURNING {SOURCE_COLUMNS}",
            (enabled, source_id, workspace_id),
        )
        if not rows:
            raise NotFound(f"no source {source_id!r} in this workspace")
        return source_from_row(rows[0])

    def create_token(self, workspace_id: int, token_id: str, token_hash: str, label: str) -> Token:
        try:
            rows = self._rows(
                "INSERT INTO tokens (id, workspace_id, token_hash, label, created_ms) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id, workspace_id, label, created_ms",
                (token_id, workspace_id, token_hash, label, now_ms()),
            )
        except errors.UniqueViolation:
            raise Conflict("a token with that id or hash already exists") from None
        except errors.ForeignKeyViolation:
            raise NotFound(f"no workspace {workspace_id}") from None
        return Token(*rows[0])


def _log_end(conn: _Connection, *, staging: bool) -> int:
    """Take the append lock, make sure the staging table exists, and read the end of the log, in
    one round trip: several statements in one simple query. Each gets its own snapshot (READ
    COMMITTED), so max(seq) is read after the lock is held."""
    script = [_LOCK_APPEND, _CREATE_STAGING] if staging else [_LOCK_APPEND]
    cur = conn.execute("; ".join([*script, _READ_LOG_END]))
    while cur.nextset():
        pass
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def _append_events(conn: _Connection, events: Sequence[EventRecord], *, last: int) -> int:
    """Log the events not logged yet, numbered from `last` + 1; return how many were new."""
    staged: set[tuple[int, int, str]] = set()
    with conn.cursor() as cur:
        with cur.copy("COPY pg_temp.cairn_staging FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_STAGING_TYPES)
            for position, e in enumerate(events):
                key = (e.workspace_id, e.dedupe_bucket, e.message_id)
                if key in staged:
                    continue
                staged.add(key)
                copy.write_row(
                    (position, e.workspace_id, e.source_id, e.message_id, e.dedupe_bucket, e.type,
                     e.event, e.user_id, e.anonymous_id, e.timestamp_ms, e.received_ms, e.body)
                )  # fmt: skip
        row = cur.execute(_MOVE_STAGED, (last,)).fetchone()
    assert row is not None
    return int(row[0])


def _copy_rejected(conn: _Connection, rejected: Sequence[RejectedRecord]) -> None:
    with conn.cursor() as cur, cur.copy(_COPY_REJECTED) as copy:
        copy.set_types(_REJECTED_TYPES)
        for r in rejected:
            copy.write_row((r.workspace_id, r.source_id, r.received_ms, r.code, r.message, r.body))
