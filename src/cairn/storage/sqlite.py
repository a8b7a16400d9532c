"""The embedded backend: one SQLite file in WAL mode.

Events are written only by the log writer's thread (`append`); control-plane writes are rare and take
the file's write lock with a busy timeout. Each thread reads on its own connection.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from cairn.errors import CairnError, Conflict, NotFound, StorageError
from cairn.ingest.messages import EventRecord, RejectedRecord
from cairn.ingest.timestamps import now_ms
from cairn.storage.base import (
    AppendResult,
    Source,
    Token,
    Workspace,
    migration_scripts,
)
from cairn.storage.sql import Params, SQLStorage, statements

__all__ = ["SQLiteStorage"]


# Events go in as multi-row INSERTs of up to 1,024 rows (11,264 parameters; fewer where the
# SQLite library's variable limit is lower: 999 before 3.32). Binding is a fast C loop and each
# statement is one `sqlite3_step` with the GIL released, so the event loop keeps running while the
# writer inserts; each statement's end makes the writer wait for the GIL again (up to the switch
# interval, while it holds the log's write turn), so a commit of 1,600 events takes three of
# those waits where chunks of 64 took 25. `executemany` re-takes the GIL for every row and,
# measured here, held a busy server to one core.
_CHUNK = 1024
_EVENT_PARAMS = 12
_EVENT_COLUMNS = (
    "workspace_id, source_id, message_id, dedupe_bucket, type, event, user_id, anonymous_id, "
    "timestamp_ms, received_ms, body, dedupe_hash"
)
# How many other slots a messageId may try when its hash's slot holds another messageId (a 64-bit
# collision in one second of one workspace: about one in 10**10 seconds at 35,000 events/s).
_PROBES = 64


@functools.cache
def _insert_events(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * rows)
    return f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES {values} ON CONFLICT DO NOTHING"


@functools.cache
def _taken_by_others(rows: int) -> str:
    """Which of `rows` (index, workspace, bucket, hash, messageId) find their dedupe slot held by
    a different messageId: hash collisions, not duplicates."""
    values = ",".join(["(?,?,?,?,?)"] * rows)
    return (
        f"SELECT v.column1 FROM (VALUES {values}) AS v JOIN events e ON e.workspace_id = "
        "v.column2 AND e.dedupe_bucket = v.column3 AND e.dedupe_hash = v.column4 "
        "WHERE e.message_id <> v.column5"
    )


def dedupe_hash(message_id: str, probe: int = 0) -> int:
    """The dedupe key of a messageId: 64 bits of BLAKE2b, signed as SQLite's integers are. A
    messageId whose slot another holds tries `probe` 1, 2, ... (every retry of it the same way)."""
    data = message_id.encode("utf-8", "surrogatepass")
    if probe:
        data = b"%d:" % probe + data
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


_ADD_EVENTS = (
    "INSERT INTO workspace_counts (workspace_id, events) VALUES (?, ?) "
    "ON CONFLICT (workspace_id) DO UPDATE SET events = events + excluded.events"
)
# When one commit holds several workspaces' events, count the new rows (a rowid range: just
# written, in cache).
_COUNT_NEW_EVENTS = (
    "INSERT INTO workspace_counts (workspace_id, events) SELECT workspace_id, count(*) "
    "FROM events WHERE seq > ? GROUP BY workspace_id "
    "ON CONFLICT (workspace_id) DO UPDATE SET events = events + excluded.events"
)
_INSERT_REJECTED = (
    "INSERT INTO rejected (workspace_id, source_id, received_ms, code, message, body) "
    "VALUES (?,?,?,?,?,?)"
)


_READER_CACHE_KIB = 8 * 1024
_CHECKPOINT_SECONDS = 1.0


class SQLiteStorage(SQLStorage):
    dialect = "sqlite"
    mark = "?"

    def __init__(self, path: str | Path, *, cache_mb: int = 64, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(
                f"sqlite synchronous must be OFF, NORMAL, FULL or EXTRA: {synchronous}"
            )
        self._synchronous = synchronous.upper()
        self._cache_kib = cache_mb * 1024
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._append_fd: int | None = None

    # connections ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("storage is closed")
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            _enable_wal(conn)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            # Readers get a small page cache (there may be dozens of reader threads); the log
            # writer's connection gets the configured one (see `append`).
            conn.execute(f"PRAGMA cache_size=-{min(self._cache_kib, _READER_CACHE_KIB)}")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            # A safety net only: while a process appends, the checkpointer thread keeps the WAL
            # short, so commits (and their latency) never carry a checkpoint.
            conn.execute("PRAGMA wal_autocheckpoint=16384")
            conn.execute("PRAGMA journal_size_limit=67108864")
            # The finder's SQL calls back into Python for times and event property filters.
            from cairn.finder.functions import register

            register(conn)
            conn.create_function("cairn_dedupe_hash", 2, dedupe_hash, deterministic=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. It queues for the write lock on the same flock as the log
        writers (`append_turn`): through SQLite's busy handler alone (sleep 1, 2, 5 ... 100 ms
        and retry) the pipeline's batches kept losing the lock to the workers' appends, which
        hand it on the moment they commit (measured: 43% of the pipeline's write thread waiting
        to begin under the 5,000 events/s lag row; docs/benchmarks.md)."""
        turn = nullcontext() if getattr(self._local, "turn", False) else self.append_turn()
        with turn:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _rows(self, sql: str, params: Params = ()) -> list[Any]:
        return self._connection().execute(sql, params).fetchall()

    def _start_checkpointer(self) -> None:
        with self._lock:
            if self._checkpointer is not None or self._closed:
                return
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="cairn-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database once a second, beside the writer, never blocking it."""
        while not self._stop_checkpoints.wait(_CHECKPOINT_SECONDS):
            try:
                self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except (sqlite3.Error, RuntimeError):
                continue  # busy or closing: the next round, or the safety net, catches up

    @contextmanager
    def append_turn(self) -> Iterator[None]:
        """The log writers of several processes (`cairn serve --workers N`) take turns through
        an flock on a file beside the database before they ask SQLite for its write lock: the
        next writer wakes the moment the last one commits, where SQLite's busy handler would
        sleep and poll (1, 2, 5, 10 ms...), adding that to every answer waiting on the commit."""
        with self._lock:
            if self._append_fd is None:
                self._append_fd = os.open(
                    f"{self.path}-append", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            fd = self._append_fd
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits without the GIL
        self._local.turn = True
        try:
            yield
        finally:
            self._local.turn = False
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._stop_checkpoints.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=10)
        with self._lock:
            self._closed = True
            for conn in self._all:
                conn.close()
            self._all.clear()
            if self._append_fd is not None:
                os.close(self._append_fd)
                self._append_fd = None
        self._local = threading.local()

    def migrate(self) -> int:
        conn = self._connection()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms "
            "INTEGER NOT NULL)"
        )
        with self._write() as conn:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            version = max(done, default=0)
            for version, script in migration_scripts(self.dialect):
                if version in done:
                    continue
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now_ms()))
        return version

    # the log --------------------------------------------------------------------------------
    def _chunk_rows(self, conn: sqlite3.Connection) -> int:
        rows = getattr(self._local, "chunk_rows", None)
        if rows is None:
            fits = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _EVENT_PARAMS
            rows = self._local.chunk_rows = min(_CHUNK, 1 << (max(fits, 1).bit_length() - 1))
        return int(rows)

    def append(
        self,
        events: Sequence[EventRecord],
        rejected: Sequence[RejectedRecord],
        *,
        durable: bool = True,
    ) -> AppendResult:
        if self._checkpointer is None:
            self._start_checkpointer()
        if not getattr(self._local, "writer", False):
            conn = self._connection()
            conn.execute(f"PRAGMA cache_size=-{self._cache_kib}")
            if self._synchronous == "FULL":
                # FULL's fsync of the WAL, moved after the commit (`sync_log`): the write lock
                # and the turn are free while this thread waits for the disk.
                conn.execute("PRAGMA synchronous=NORMAL")
                self._local.sync_wal = True
            self._local.writer = True
        turn = nullcontext() if getattr(self._local, "turn", False) else self.append_turn()
        with turn, self._write() as conn:
            # seq is the rowid: SQLite assigns max + 1 under the write lock, so seq order is
            # commit order.
            workspaces = {e.workspace_id for e in events}
            before = 0
            if len(workspaces) > 1:
                before = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            inserted = last = 0
            for rows, params in _chunks(events, self._chunk_rows(conn)):
                cursor = conn.execute(_insert_events(len(rows)), params)
                if cursor.rowcount > 0:
                    inserted += cursor.rowcount
                    # The statement's last new row: the log's end (rowids are max + 1).
                    last = cursor.lastrowid or 0
                if cursor.rowcount < len(rows):  # duplicates, or (rarely) hash collisions
                    added, end = _place_collisions(conn, rows)
                    inserted += added
                    last = end or last
            if inserted > 0 and len(workspaces) == 1:
                conn.execute(_ADD_EVENTS, (workspaces.pop(), inserted))
            elif inserted > 0:
                conn.execute(_COUNT_NEW_EVENTS, (before,))
            if rejected:
                conn.executemany(
                    _INSERT_REJECTED,
                    [(r.workspace_id, r.source_id, r.received_ms, r.code, r.message, r.body)
                     for r in rejected],
                )  # fmt: skip
            if not last:  # nothing new: the log's end as another commit left it
                last = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        if durable:
            self.sync_log()
        return AppendResult(inserted=inserted, duplicates=len(events) - inserted, last_seq=last)

    def sync_log(self) -> None:
        """fdatasync the WAL after commits made with `synchronous=NORMAL` (the log writer's
        connection, when the setting is FULL): FULL's guarantee, without holding the write lock
        through the flush. A commit's frames are then either in the WAL, which this flushes, or
        already copied by a checkpoint, which NORMAL syncs before the WAL is reused."""
        if not getattr(self._local, "sync_wal", False):
            return
        wal = f"{self.path}-wal"
        fd: int | None = getattr(self._local, "wal_fd", None)
        try:
            if fd is not None and os.fstat(fd).st_ino != os.stat(wal).st_ino:
                os.close(fd)  # the WAL was removed and made again: flush the new one
                fd = None
            if fd is None:
                fd = self._local.wal_fd = os.open(wal, os.O_RDONLY | os.O_CLOEXEC)
            os.fdatasync(fd)
        except FileNotFoundError:
            # No WAL: the last connection checkpointed it into the database, synced, and removed it.
            self._local.wal_fd = None

    def create_workspace(self, name: str) -> Workspace:
        try:
            with self._write() as conn:
                cur = conn.execute(
                    "INSERT INTO workspaces (name, created_ms) VALUES (?, ?) RETURNING id, name, "
                    "created_ms",
                    (name, now_ms()),
                )
                return Workspace(*cur.fetchone())
        except sqlite3.IntegrityError:
            raise Conflict(f"workspace {name!r} already exists") from None

    def create_source(self, workspace_id: int, name: str, source_id: str, write_key: str) -> Source:
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO sources (id, workspace_id, name, write_key, enabled, created_ms) "
                    "VALUES (?, ?, ?, ?, 1, ?)",
                    (source_id, workspace_id, name, write_key, now_ms()),
                )
        except sqlite3.IntegrityError as exc:
            raise _integrity(
                exc,
                f"no workspace {workspace_id}",
                f"source {name!r} already exists in this workspace",
            ) from None
        return self._stored_source(source_id)

    def set_source_enabled(self, workspace_id: int, source_id: str, enabled: bool) -> Source:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE sources SET enabled = ? WHERE id = ? AND workspace_id = ?",
                (int(enabled), source_id, workspace_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no source {source_id!r} in this workspace")
        return self._stored_source(source_id)

    def _stored_source(self, source_id: str) -> Source:
        source = self._source("id", source_id)
        assert source is not None, source_id
        return source

    def create_token(self, workspace_id: int, token_id: str, token_hash: str, label: str) -> Token:
        created = now_ms()
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO tokens (id, workspace_id, token_hash, label, created_ms) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (token_id, workspace_id, token_hash, label, created),
                )
        except sqlite3.IntegrityError as exc:
            raise _integrity(
                exc, f"no workspace {workspace_id}", "a token with that id or hash already exists"
            ) from None
        return Token(token_id, workspace_id, label, created)


def _chunks(
    events: Sequence[EventRecord], most: int
) -> Iterator[tuple[Sequence[EventRecord], list[Any]]]:
    """Events and their flat parameter list, `most` rows (a power of two) at a time, then the
    powers of two below (few distinct statements, all kept prepared in the statement cache)."""
    start = 0
    while start < len(events):
        left = len(events) - start
        size = most if left >= most else 1 << (left.bit_length() - 1)
        rows = events[start : start + size]
        params: list[Any] = []
        for e in rows:
            params += _event_row(e, dedupe_hash(e.message_id))
        yield rows, params
        start += size


def _event_row(e: EventRecord, key: int) -> tuple[Any, ...]:
    """An event's parameters for `_insert_events`, in `_EVENT_COLUMNS` order; `key` its dedupe
    hash (at the probe it is stored under)."""
    return (e.workspace_id, e.source_id, e.message_id, e.dedupe_bucket, e.type, e.event,
            e.user_id, e.anonymous_id, e.timestamp_ms, e.received_ms, e.body, key)  # fmt: skip


def _place_collisions(conn: sqlite3.Connection, rows: Sequence[EventRecord]) -> tuple[int, int]:
    """After an insert that skipped some of `rows`: a row whose slot holds a different messageId
    (a hash collision, not a duplicate) goes in under its next probe, and so on; true duplicates
    stay out. Returns (rows added, the last one's seq or 0)."""
    added = last = 0
    pending = rows
    for probe in range(_PROBES + 1):
        params: list[Any] = []
        for i, e in enumerate(pending):
            params += (i, e.workspace_id, e.dedupe_bucket, dedupe_hash(e.message_id, probe),
                       e.message_id)  # fmt: skip
        others = sorted(i for (i,) in conn.execute(_taken_by_others(len(pending)), params))
        pending = [pending[i] for i in others]
        if not pending or probe == _PROBES:
            break
        for e in pending:
            cursor = conn.execute(
                _insert_events(1), _event_row(e, dedupe_hash(e.message_id, probe + 1))
            )
            if cursor.rowcount > 0:
                added += 1
                last = cursor.lastrowid or last
    if pending:
        raise StorageError(f"no free dedupe slot for {len(pending)} messageIds in {_PROBES} probes")
    return added, last


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch a new database to WAL. Several processes opening a new file at once race for the
    lock this needs, and SQLite answers "locked" without waiting, so retry for a while."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _integrity(exc: sqlite3.IntegrityError, missing: str, taken: str) -> CairnError:
    """A foreign key failure means the parent is missing; anything else is a name taken."""
    if "FOREIGN KEY" in str(exc):
        return NotFound(missing)
    return Conflict(taken)
