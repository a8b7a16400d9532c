"""Ad-hoc search: all people (or accounts) matching a condition, most recently seen first.

One compiled query per page (keyset on last seen), one to count, and a CSV export that pages
through every match. `explain` shows the SQL and its parameters.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from cairn.errors import BadRequest
from cairn.finder.sql import Params, compile_accounts, compile_people
from cairn.finder.tree import Condition, from_json
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.storage.people import decode_json
from cairn.storage.sql import SQLStorage

__all__ = ["Search", "condition_from_request"]

_encode = msgspec.json.encode


def condition_from_request(query: Any, condition: Any) -> Condition:
    """The condition of a search request: `query` (text form) or `condition` (JSON form)."""
    if (query is None) == (condition is None):
        raise BadRequest(
            'give exactly one of "query" (text) or "condition" (JSON)', code="invalid_query"
        )
    if query is not None:
        if not isinstance(query, str):
            raise BadRequest('"query" is the text form, a string', code="invalid_query")
        from cairn.finder.text import parse

        parsed: Condition = parse(query)
        return parsed
    return from_json(condition)


def _iso(ms: int | None) -> str | None:
    return format_ms(ms) if ms else None


@dataclass
class Search:
    storage: SQLStorage
    workspace_id: int
    condition: Condition | None  # None: everyone (the UI's export of all people)
    accounts: bool = False
    now: int = 0
    per_person: bool = False  # count events per candidate (see `compile_people`)

    def __post_init__(self) -> None:
        self.now = self.now or now_ms()

    # SQL ----------------------------------------------------------------------------------------
    def _where(self, params: Params) -> str:
        where = "1 = 1"
        if self.condition is not None and self.accounts:
            where = compile_accounts(self.condition, self.workspace_id, self.now, params)
        elif self.condition is not None:
            where = compile_people(self.condition, self.workspace_id, self.now, params,
                                   per_person=self.per_person)  # fmt: skip
        if self.accounts:
            return f"a.workspace_id = {params.p(self.workspace_id)} AND {where}"
        # On SQLite, `+` keeps the planner off the partial index on (workspace, last seen):
        # visiting every person through it reads the table in random order, several times slower
        # than one scan, and each match is sorted afterwards anyway (the total counts them all).
        alive = (
            "+p.merged_into IS NULL"
            if self.storage.dialect == "sqlite"
            else "p.merged_into IS NULL"
        )
        return f"p.workspace_id = {params.p(self.workspace_id)} AND {alive} AND {where}"

    def _page_sql(
        self, limit: int, cursor: tuple[int, Any] | None, *, with_total: bool = False
    ) -> tuple[str, dict[str, Any]]:
        params = Params(self.storage.dialect)
        where = self._where(params)
        key = "a.group_id" if self.accounts else "p.id"
        seen = "a.last_seen_ms" if self.accounts else "p.last_seen_ms"
        if cursor is not None:
            last, after = cursor
            where += (
                f" AND ({seen} < {params.p(last)} OR ({seen} = {params.p(last)} "
                f"AND {key} < {params.p(after)}))"
            )
        columns = (
            "a.group_id, a.traits, a.first_seen_ms, a.last_seen_ms, a.events"
            if self.accounts
            else "p.id, p.traits, p.first_seen_ms, p.last_seen_ms, p.events"
        )
        order = seen
        if with_total:  # the number of matches, from the same evaluation as the page
            columns += ", count(*) OVER ()"
            # Every match is read for the count: one scan and a sort beat walking the last-seen
            # index, which visits the table in random order (`+ 0` keeps the planner off it).
            order = f"{seen} + 0"
        table = "accounts a" if self.accounts else "persons p"
        sql = (
            f"SELECT {columns} FROM {table} WHERE {where} "
            f"ORDER BY {order} DESC, {key} DESC LIMIT {params.p(limit)}"
        )
        return sql, params.values

    def explain(self) -> dict[str, Any]:
        sql, params = self._page_sql(50, None)
        return {"sql": sql, "params": params, "dialect": self.storage.dialect}

    # reading ------------------------------------------------------------------------------------
    def page(self, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        after = self._cursor(cursor)
        rows = self._rows(*self._page_sql(limit, after, with_total=after is None))
        data = [self._item(row[:5]) for row in rows]
        next_cursor = None
        if len(rows) == limit:
            key, _, _, last, _ = rows[-1][:5]
            next_cursor = f"{last or 0}.{key}"
        total = (int(rows[0][5]) if rows else 0) if after is None else self.total()
        return {"data": data, "next_cursor": next_cursor, "total": total}

    def total(self) -> int:
        params = Params(self.storage.dialect)
        table = "accounts a" if self.accounts else "persons p"
        sql = f"SELECT count(*) FROM {table} WHERE {self._where(params)}"
        return int(self._rows(sql, params.values)[0][0])

    def ids(self, first: int | None = None, last: int | None = None) -> list[Any]:
        """Every match; of people, optionally only those with ids from `first` to `last`."""
        params = Params(self.storage.dialect)
        key = "a.group_id" if self.accounts else "p.id"
        table = "accounts a" if self.accounts else "persons p"
        sql = f"SELECT {key} FROM {table} WHERE {self._where(params)}"
        if first is not None and last is not None and not self.accounts:
            sql += f" AND p.id >= {params.p(first)} AND p.id <= {params.p(last)}"
        return [row[0] for row in self._rows(sql, params.values)]

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        if self.storage.dialect != "postgres":
            return self.storage.rows(sql, params)
        # The planner's cost for a count per candidate person is large enough to switch on JIT,
        # whose compilation (about 200 ms) costs more than the whole query runs.
        with self.storage.transaction() as conn:
            conn.execute("SET LOCAL jit = off")
            return list(conn.execute(sql, params, binary=True).fetchall())

    def _cursor(self, raw: str | None) -> tuple[int, Any] | None:
        if not raw:
            return None
        last, dot, key = raw.partition(".")
        try:
            if not dot or not key:
                raise ValueError
            return int(last), (key if self.accounts else int(key))
        except ValueError:
            raise BadRequest(f"invalid cursor {raw!r}", code="invalid_cursor") from None

    def _item(self, row: Any) -> dict[str, Any]:
        key, traits, first, last, events = row
        return {
            ("group_id" if self.accounts else "id"): key,
            "traits": decode_json(traits),
            "first_seen": _iso(first),
            "last_seen": _iso(last),
            "events": events,
        }

    def csv(self, page_size: int = 1000) -> Iterator[str]:
        """Every match as CSV lines: the key, first and last seen, events, then the traits (JSON)."""
        out = io.StringIO()
        writer = csv.writer(out)
        key = "group_id" if self.accounts else "id"
        writer.writerow([key, "email", "name", "first_seen", "last_seen", "events", "traits"])
        cursor: tuple[int, Any] | None = None
        while True:
            rows = self._rows(*self._page_sql(page_size, cursor))
            for row in rows:
                item = self._item(row)
                traits = item["traits"]
                writer.writerow([
                    item[key], _cell(traits.get("email")), _cell(traits.get("name")),
                    item["first_seen"] or "", item["last_seen"] or "", item["events"],
                    _encode(traits).decode(),
                ])  # fmt: skip
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(rows) < page_size:
                return
            cursor = (rows[-1][3] or 0, rows[-1][0])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else _encode(value).decode()
    # A spreadsheet runs cells starting with these as formulas: quote them (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
