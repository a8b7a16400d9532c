"""SQL for people, accounts, identity and the pipeline's cursor: one text for both backends.

Statements are written with `?` placeholders and turned into `%s` for PostgreSQL; JSON columns are
TEXT in SQLite and jsonb in PostgreSQL (`{j}` marks a JSON parameter). Values are always
parameters, never spliced into the text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec

from cairn.errors import Conflict
from cairn.ingest.timestamps import now_ms
from cairn.storage.sql import SQLStorage

__all__ = [
    "MARK_DIRTY",
    "MARK_DIRTY_TYPES",
    "PIPELINE_CURSOR",
    "CursorRow",
    "PeopleStore",
    "StaleBatch",
    "Tx",
    "decode_json",
]

PIPELINE_CURSOR = "pipeline"
_PIPELINE_CACHE_KIB = 256 * 1024  # an upper bound: SQLite allocates pages as it reads them
_CHUNK = 500
_encode = msgspec.json.encode
_decode = msgspec.json.decode
# U+0000 is stored as U+FFFD (an escaped backslash before `\u0000` is left alone).
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


class StaleBatch(Conflict):
    """Derived state changed under a batch (another worker, or an unmerge): redo the batch."""


class CursorRow(msgspec.Struct, frozen=True):
    position: int
    version: int
    holder: str | None
    lease_until_ms: int
    high_water: int
    updated_ms: int


def decode_json(value: Any) -> Any:
    """A JSON column as Python: SQLite returns text, PostgreSQL's jsonb arrives decoded."""
    if isinstance(value, str | bytes):
        return _decode(value)
    return value


class Tx:
    """One write transaction, with the dialect's placeholders applied."""

    def __init__(self, store: PeopleStore, conn: Any) -> None:
        self._store = store
        self.conn = conn

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.conn.execute(self._store.sql(sql), self._clean(params)).fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.conn.execute(self._store.sql(sql), self._clean(params)).rowcount)

    def insert(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`sql`, an INSERT of one `VALUES (...)` row, for every row. On PostgreSQL as multi-row
        INSERTs of 128 and 16 rows (one statement for the server to run per group instead of one
        per row), the rest row by row; rows must then not conflict with each other when `sql`
        ends in `ON CONFLICT ... DO UPDATE` (PostgreSQL updates a row only once per statement).

        On SQLite as one statement over the rows as JSON (`json_each`; SQLite applies them one
        after the other, as `executemany` would). `sqlite3` holds the GIL while it binds and
        releases it while SQLite runs a statement: a statement per row hands the GIL back and
        forth per row, and with the pipeline's stages busy on another thread (write-behind)
        every hand-over waited (person_events rows: 10.8 µs each alone, 36.6 beside the stages).
        One statement holds the GIL only to encode the rows."""
        if not self._store._pg:
            if len(rows) < _SQLITE_JSON_ROWS:
                self.many(sql, rows)
            else:
                self.conn.execute(_from_json(self._store.sql(sql)), (_json_rows(rows),))
            return
        start = 0
        for size in _GROUPS:
            groups = (len(rows) - start) // size
            if groups == 0:
                continue
            text = self._store.sql(_multi_row(sql, size))
            flat = [
                [value for row in rows[first : first + size] for value in row]
                for first in range(start, start + groups * size, size)
            ]
            self._execute_many(text, flat)
            start += groups * size
        self.many(sql, rows[start:])

    def copy(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """`insert(sql, rows)` for rows new to the table. On PostgreSQL one `COPY` of the
        INSERT's table and columns (no statement for the server to parse, plan and bind per group
        of rows: most of its CPU for the pipeline's per-event tables), in a savepoint: should a
        row conflict after all, the rows go in through `sql` and its `ON CONFLICT` clause."""
        if not self._store._pg or not rows:
            self.insert(sql, rows)
            return
        # Here, not at the top: on SQLite the driver is never loaded (about 9 MB a process).
        import psycopg

        try:
            with (
                self.conn.transaction(),
                self.conn.cursor() as cur,
                cur.copy(_copy_of(sql)) as copy,
            ):
                for row in self._clean_rows(rows):
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            self.insert(sql, rows)

    def upsert(self, sql: str, types: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """`insert(sql, rows)` for rows that do not conflict with each other, `types` being the
        PostgreSQL types of the INSERT's columns. On PostgreSQL the rows are COPYed into a
        temporary table and inserted from it by one statement (measured: several times less
        client CPU than binding the rows to multi-row INSERTs or to arrays for `unnest`)."""
        if not self._store._pg or not rows:
            self.insert(sql, rows)
            return
        head, _, rest = _copy_of(sql).removeprefix("COPY ").partition(" (")
        names = rest.partition(")")[0].split(", ")
        tail = sql.partition(" VALUES (")[2].partition(")")[2]
        staged = self._stage(head, list(zip(names, types, strict=True)), rows)
        columns = ", ".join(names)
        self.conn.execute(
            self._store.sql(f"INSERT INTO {head} ({columns}) SELECT {columns} FROM {staged}{tail}")
        )

    def _stage(
        self, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> str:
        """`rows` COPYed into this connection's temporary table for `name` with `columns`
        ((name, type)), emptied at commit; the table's name."""
        table = f"cairn_stage_{name}"
        shape = ", ".join(f"{column} {kind}" for column, kind in columns)
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({shape}) ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY pg_temp.{table} FROM STDIN") as copy:
                for row in self._clean_rows(rows):
                    copy.write_row(row)
        return f"pg_temp.{table}"

    def update(
        self, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
    ) -> None:
        """`UPDATE table SET column = ... WHERE id = ...` for rows of (id, *columns), `columns`
        being (name, PostgreSQL type). On PostgreSQL the rows are COPYed into a temporary table
        and one statement updates from it; on SQLite `executemany`."""
        if not rows:
            return
        names = [name for name, _ in columns]
        if self._store._pg:
            staged = self._stage(f"{table}_update", [("id", "bigint"), *columns], rows)
            self.conn.execute(_pg_update(table, tuple(names), staged), ([row[0] for row in rows],))
            return
        # One statement over the rows as JSON, as `insert` does.
        self.conn.execute(_json_update(table, tuple(names)), (_json_rows(rows),))

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._execute_many(self._store.sql(sql), rows)

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._store.dialect == "sqlite":
            self.conn.executemany(sql, rows)
        else:
            # psycopg sends executemany's statements in one pipeline: no round trip per row
            with self.conn.cursor() as cur:
                cur.executemany(sql, self._clean_rows(rows))

    def _clean_rows(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """`_clean` of every row; the rows themselves when no text in them holds U+0000 (one
        search over all their text: the check row by row was 7% of the pipeline's thread)."""
        if "\x00" not in "".join([v for row in rows for v in row if isinstance(v, str)]):
            return rows
        return [self._clean(row) for row in rows]

    def _clean(self, params: Sequence[Any]) -> Sequence[Any]:
        """PostgreSQL text cannot hold U+0000: derived text stores U+FFFD instead (as JSON does)."""
        if self._store.dialect == "sqlite" or not any(
            isinstance(p, str) and "\x00" in p for p in params
        ):
            return params
        return [p.replace("\x00", "\ufffd") if isinstance(p, str) else p for p in params]


class PeopleStore:
    """Derived state over a SQL backend. Thread-safe as the backend is."""

    def __init__(self, storage: SQLStorage) -> None:
        self.storage = storage
        self.dialect = storage.dialect
        self._pg = self.dialect == "postgres"

    # SQL text ---------------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        if self._pg:
            return (
                text.replace("{j}", "?::jsonb")
                .replace("?", "%s")
                .replace("{greatest}", "GREATEST")
                .replace("{text}", "::text")
            )
        return text.replace("{j}", "?").replace("{greatest}", "max").replace("{text}", "")

    def json(self, value: Any) -> str:
        """JSON text of a derived value. U+0000 becomes U+FFFD on both backends: PostgreSQL's
        jsonb cannot hold it and SQLite's JSON functions stop at it."""
        text = _encode(value).decode("utf-8")
        if "\\u0000" in text:
            # the character itself, not its escape: SQLite matches JSON keys as written
            text = _NUL.sub("\\1\ufffd", text)
        return text

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._pg and any(isinstance(p, str) and "\x00" in p for p in params):
            params = [p.replace("\x00", "\ufffd") if isinstance(p, str) else p for p in params]
        return self.storage.rows(self.sql(sql), params)

    def pipeline_connection(self) -> None:
        """Set up this thread's SQLite connection for the pipeline's batches.

        `synchronous=NORMAL`: a process crash still loses nothing, and a power cut can only lose
        the last batches, which the pipeline redoes from the log (their cursor position is lost
        with them). The log itself keeps the configured setting (FULL by default) on the writer's
        connection. A page cache that holds a whole batch's pages: a batch of 10,000 events
        dirties tens of megabytes of persons and index pages, and with a reader's 8 MB cache
        SQLite spilled them to the WAL mid-transaction and read them back (measured: 94 to 70
        µs of CPU per event with the larger batches, docs/benchmarks.md)."""
        if not self._pg:
            self.storage.rows("PRAGMA synchronous=NORMAL")
            self.storage.rows(f"PRAGMA cache_size=-{_PIPELINE_CACHE_KIB}")

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        with self.storage.transaction() as conn:
            yield Tx(self, conn)

    @contextmanager
    def batch_tx(self) -> Iterator[Tx]:
        """A pipeline batch's transaction. On PostgreSQL its commit does not wait for the WAL to
        reach the disk (`synchronous_commit = off` for this transaction only), the counterpart of
        `synchronous=NORMAL` on SQLite: a crash can lose only the last batches, with their cursor
        position (one transaction), and the pipeline redoes them from the log, whose own commits
        keep the server's setting."""
        with self.tx() as tx:
            if self._pg:
                tx.run("SET LOCAL synchronous_commit = off")
            yield tx

    def clear_dirty(self, tx: Tx, marks: Sequence[tuple[int, int]]) -> None:
        """Drop the `dirty_persons` marks (person_id, at_ms) a consumer handled, except where
        the person was marked again since. One statement on PostgreSQL (one DELETE per person
        was the largest cost of the segment engine under the pipeline's lag benchmark)."""
        if not marks:
            return
        if self._pg:
            tx.run(
                "DELETE FROM dirty_persons d USING unnest(?::bigint[], ?::bigint[]) "
                "AS x(person_id, at_ms) WHERE d.person_id = x.person_id AND d.at_ms <= x.at_ms",
                ([pid for pid, _ in marks], [at for _, at in marks]),
            )
        else:
            tx.many("DELETE FROM dirty_persons WHERE person_id = ? AND at_ms <= ?", marks)

    # the pipeline's cursor --------------------------------------------------------------------
    def ensure_cursor(self, name: str = PIPELINE_CURSOR) -> None:
        with self.tx() as tx:
            tx.run(
                "INSERT INTO cursors (name, position, updated_ms) VALUES (?, 0, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (name, now_ms()),
            )

    def cursor(self, name: str = PIPELINE_CURSOR) -> CursorRow:
        rows = self.rows(
            "SELECT position, version, holder, lease_until_ms, high_water, updated_ms "
            "FROM cursors WHERE name = ?",
            (name,),
        )
        if not rows:
            return CursorRow(0, 0, None, 0, 0, 0)
        return CursorRow(*rows[0])

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Hold the pipeline for `seconds` if it is free, expired, or already ours."""
        now = now_ms()
        with self.tx() as tx:
            changed = tx.run(
                "UPDATE cursors SET holder = ?, lease_until_ms = ? WHERE name = ? "
                "AND (holder IS NULL OR holder = ? OR lease_until_ms < ?)",
                (holder, now + int(seconds * 1000), name, holder, now),
            )
        return changed == 1

    def release_lease(self, name: str, holder: str) -> None:
        with self.tx() as tx:
            tx.run(
                "UPDATE cursors SET holder = NULL, lease_until_ms = 0 WHERE name = ? AND holder = ?",
                (name, holder),
            )

    def advance(self, tx: Tx, name: str, *, version: int, position: int, high_water: int) -> None:
        """Move the cursor in the batch's transaction, if nothing changed since the batch read it."""
        changed = tx.run(
            "UPDATE cursors SET position = ?, version = version + 1, "
            "high_water = {greatest}(high_water, ?), updated_ms = ? WHERE name = ? AND version = ?",
            (position, high_water, now_ms(), name, version),
        )
        if changed != 1:
            raise StaleBatch("the pipeline's state changed during the batch")

    def bump(self, tx: Tx, name: str = PIPELINE_CURSOR) -> None:
        """Mark derived state as changed outside the runner (runners redo their open batch)."""
        tx.run(
            "UPDATE cursors SET version = version + 1, updated_ms = ? WHERE name = ?",
            (now_ms(), name),
        )

    def rewind(self, position: int, name: str = PIPELINE_CURSOR) -> None:
        with self.tx() as tx:
            tx.run(
                "UPDATE cursors SET position = ?, version = version + 1, updated_ms = ? "
                "WHERE name = ?",
                (max(position, 0), now_ms(), name),
            )

    # loading state for a batch ------------------------------------------------------------------
    def max_ids(self) -> tuple[int, int]:
        row = self.rows(
            "SELECT (SELECT coalesce(max(id), 0) FROM persons), "
            "(SELECT coalesce(max(id), 0) FROM identifiers)"
        )[0]
        return int(row[0]), int(row[1])

    def applied(self, first: int, last: int) -> set[int]:
        rows = self.rows("SELECT seq FROM person_events WHERE seq BETWEEN ? AND ?", (first, last))
        return {row[0] for row in rows}

    def identifiers(self, workspace_id: int, kind: str, values: Iterable[str]) -> list[Any]:
        """(id, kind, value, person_id, via_id) for the values that are linked."""
        return self._among(
            "SELECT id, kind, value, person_id, via_id FROM identifiers WHERE workspace_id = ? "
            "AND kind = ? AND value",
            (workspace_id, kind),
            values,
        )

    def persons(self, ids: Iterable[int]) -> list[Any]:
        return self._among(f"SELECT {PERSON_COLUMNS} FROM persons WHERE id", (), ids)

    def accounts(self, workspace_id: int, group_ids: Iterable[str]) -> list[Any]:
        return self._among(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE workspace_id = ? AND group_id",
            (workspace_id,),
            group_ids,
        )

    def _among(self, sql: str, params: Sequence[Any], values: Iterable[Any]) -> list[Any]:
        """Rows of `sql` (ending in the column to match) whose column is one of `values`: one
        statement over an array on PostgreSQL, IN lists of 500 on SQLite."""
        values = list(values)
        if self._pg:
            clean = [v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in values]
            return self.rows(f"{sql} = ANY(?)", (*params, clean))
        found: list[Any] = []
        for chunk in _chunks(values):
            found += self.rows(f"{sql} IN ({','.join('?' * len(chunk))})", (*params, *chunk))
        return found

    def account(self, workspace_id: int, group_id: str) -> Any | None:
        rows = self.rows(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE workspace_id = ? AND group_id = ?",
            (workspace_id, group_id),
        )
        return rows[0] if rows else None

    def memberships(self, person_ids: Iterable[int]) -> set[tuple[int, str, int]]:
        """(workspace, group, person) of the memberships of these persons."""
        return {
            (ws, group_id, pid)
            for ws, group_id, pid in self._among(
                "SELECT workspace_id, group_id, person_id FROM account_members WHERE person_id",
                (),
                person_ids,
            )
        }

    def any_blocks(self) -> bool:
        return bool(self.rows("SELECT 1 FROM identity_blocks LIMIT 1"))

    def blocked(self, a: int, b: int) -> bool:
        low, high = min(a, b), max(a, b)
        return bool(
            self.rows(
                "SELECT 1 FROM identity_blocks WHERE person_a = ? AND person_b = ?", (low, high)
            )
        )


# Marks a person whose derived state changed, for the segment engine (pipeline and unmerge).
MARK_DIRTY_TYPES = ("bigint", "bigint", "bigint")
MARK_DIRTY = (
    "INSERT INTO dirty_persons (person_id, workspace_id, at_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (person_id) DO UPDATE SET at_ms = excluded.at_ms"
)
# JSON columns are read as text (`{text}`: `::text` on PostgreSQL) and decoded by msgspec, several
# times faster than psycopg's jsonb loader (the standard library's json).
PERSON_COLUMNS = (
    "id, workspace_id, merged_into, traits{text}, trait_ts{text}, event_counts{text}, "
    "first_seen_ms, last_seen_ms, events, revenue_micros, user_ids, identifiers, "
    "identifiers_refused, created_ms, updated_ms"
)
ACCOUNT_COLUMNS = (
    "workspace_id, group_id, traits{text}, trait_ts{text}, event_counts{text}, first_seen_ms, "
    "last_seen_ms, events, created_ms, updated_ms"
)


_GROUPS = (128, 16)  # rows per multi-row INSERT: few distinct statements, all kept prepared
_SQLITE_JSON_ROWS = 8  # fewer rows go in by executemany


def _json_rows(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as one JSON array of arrays (bytes are not expected: no column here holds any)."""
    return _encode(rows).decode("utf-8")


@functools.lru_cache(maxsize=64)
def _multi_row(sql: str, rows: int) -> str:
    """`INSERT ... VALUES (row) tail` as `INSERT ... VALUES (row), (row), ... tail`."""
    head, row, tail = _one_row(sql)
    return f"{head} VALUES {','.join([f'({row})'] * rows)}{tail}"


def _one_row(sql: str) -> tuple[str, str, str]:
    """(`INSERT ... `, `row`, ` tail`) of `INSERT ... VALUES (row) tail`."""
    head, found, rest = sql.partition(" VALUES (")
    row, closed, tail = rest.partition(")")
    if not found or not closed or "(" in row:
        raise ValueError(f"not an INSERT of one VALUES row: {sql[:80]}")
    return head, row, tail


@functools.lru_cache(maxsize=64)
def _from_json(sql: str) -> str:
    """SQLite's `INSERT ... VALUES (?, ...) tail` as an INSERT of the rows of one JSON array
    parameter: `INSERT ... SELECT value->>0, ... FROM json_each(?) WHERE true tail` (the WHERE
    keeps SQLite from reading an ON CONFLICT tail as a join's ON)."""
    head, row, tail = _one_row(sql)
    columns = ", ".join(f"value->>{at}" for at in range(row.count("?")))
    return f"{head} SELECT {columns} FROM json_each(?) WHERE true{tail}"


@functools.lru_cache(maxsize=64)
def _json_update(table: str, names: tuple[str, ...]) -> str:
    """SQLite's `UPDATE table SET name = ... WHERE id = ...` for the rows (id, *names) of one
    JSON array parameter."""
    sets = ", ".join(f"{name} = v.value->>{at}" for at, name in enumerate(names, start=1))
    return f"UPDATE {table} SET {sets} FROM json_each(?) AS v WHERE {table}.id = v.value->>0"


@functools.lru_cache(maxsize=64)
def _pg_update(table: str, names: tuple[str, ...], staged: str) -> str:
    """PostgreSQL's `UPDATE table SET name = ... WHERE id = ...` from the rows (id, *names) of
    the temporary table `staged`, the ids given again as an array parameter: the table is then
    read by its primary key. Without them the planner, which only guesses the rows of a temporary
    table (never analyzed: 3,422 for 1,500) and prices every probe of the key as a random read,
    hashed a sequential scan of the whole table from about 1,000 rows on (persons, 104,038 rows,
    on the test server: 174 ms for 3,000 rows, 55 ms by the ids)."""
    sets = ", ".join(f"{name} = v.{name}" for name in names)
    return (
        f"UPDATE {table} t SET {sets} FROM {staged} v "
        "WHERE t.id = v.id AND t.id = ANY(%s::bigint[])"
    )


@functools.lru_cache(maxsize=64)
def _copy_of(sql: str) -> str:
    """`INSERT INTO table (columns) VALUES (...) ...` as `COPY table (columns) FROM STDIN`."""
    head, found, _ = sql.partition(" VALUES (")
    if not found or not head.startswith("INSERT INTO "):
        raise ValueError(f"not an INSERT of one VALUES row: {sql[:80]}")
    return f"COPY {head.removeprefix('INSERT INTO ')} FROM STDIN"


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
