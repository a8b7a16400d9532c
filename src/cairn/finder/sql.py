"""The SQL compiler: a condition to a parameterized WHERE clause over people (or accounts), for
SQLite and PostgreSQL. No value, name or path is ever part of the SQL text: paths travel as
parameters (a JSON path string for SQLite, a text[] / jsonpath for PostgreSQL).

It reproduces `cairn.finder.values` exactly; the oracle tests hold both backends to it. Where SQL
cannot say it cheaply, SQLite calls back into Python (`cairn_time`, `cairn_where`, registered on
every connection) and PostgreSQL uses `cairn_time(jsonb)` (migration 0004) and jsonpath.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cairn.finder.tree import (
    UNIT_MS,
    All,
    AnyOf,
    Condition,
    ConditionError,
    Did,
    InSegment,
    Not,
    Predicate,
    to_json,
)
from cairn.finder.values import ascii_lower

__all__ = ["Compiled", "Params", "compile_accounts", "compile_people"]

_encode = msgspec.json.encode
_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"


@dataclass
class Compiled:
    """SQL with named parameters (`:p1` for SQLite, `%(p1)s` for PostgreSQL) and their values."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Params:
    """Named parameters, so a fragment may appear more than once in the text."""

    dialect: str
    values: dict[str, Any] = field(default_factory=dict)

    def p(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}" if self.dialect == "sqlite" else f"%({name})s"


@dataclass
class _Ctx:
    dialect: str
    workspace_id: int
    now_ms: int
    params: Params
    accounts: bool = False  # compiling over accounts (traits are the account's)
    narrowed: bool = False  # cheaper sibling tests run first: count events per candidate

    def p(self, value: Any) -> str:
        return self.params.p(value)

    def but(self, *, narrowed: bool) -> _Ctx:
        return _Ctx(self.dialect, self.workspace_id, self.now_ms, self.params, self.accounts,
                    narrowed)  # fmt: skip


def compile_people(
    cond: Condition, workspace_id: int, now_ms: int, params: Params, *, per_person: bool = False
) -> str:
    """WHERE clause over `persons p`; its parameters are added to `params`. With `per_person`,
    events are counted per candidate person (for a query that names few persons, such as a
    range of ids), rather than for the whole workspace at once unless other tests narrow it."""
    return _top(cond, _Ctx(params.dialect, workspace_id, now_ms, params, narrowed=per_person))


def compile_accounts(cond: Condition, workspace_id: int, now_ms: int, params: Params) -> str:
    """WHERE clause over `accounts a`: traits are the account's, events its own."""
    return _top(cond, _Ctx(params.dialect, workspace_id, now_ms, params, accounts=True))


# Cheapest first: SQLite tests the terms of an AND in the order written, so the column tests and
# the trait tests (one JSON read per row) cut the candidates before any event is counted.
_COST = {"profile": 0, "trait": 1, "account_trait": 2}


def _cost(cond: Condition) -> int:
    if isinstance(cond, Predicate):
        return _COST[cond.scope]
    if isinstance(cond, InSegment):
        return 3
    return 5 if isinstance(cond, Did) else 4


def _all(cond: All, ctx: _Ctx, each: Callable[[Condition, _Ctx], str]) -> str:
    """The items cheapest first; a test beside them narrows the candidates of event counts."""
    narrowed = ctx.narrowed or any(isinstance(c, Predicate) for c in cond.items)
    inner = ctx.but(narrowed=narrowed)
    return "(" + " AND ".join(each(c, inner) for c in sorted(cond.items, key=_cost)) + ")"


def _top(cond: Condition, ctx: _Ctx) -> str:
    """The condition as the whole WHERE clause. There a NULL test drops the row as false does,
    so the terms of a top-level AND go bare (no `coalesce`), and indexes can serve them."""
    if isinstance(cond, All):
        return _all(cond, ctx, _top)
    if isinstance(cond, Predicate):
        return _predicate(cond, ctx)
    return _cond(cond, ctx)


def _cond(cond: Condition, ctx: _Ctx) -> str:
    if isinstance(cond, All):
        return _all(cond, ctx, _cond)
    if isinstance(cond, AnyOf):
        return "(" + " OR ".join(_cond(c, ctx) for c in cond.items) + ")"
    if isinstance(cond, Not):
        inner = cond.item
        if isinstance(inner, Not):  # not not x: x (and one level less for SQLite's parser)
            return _cond(inner.item, ctx)
        return f"NOT {_cond(inner, ctx)}"
    if isinstance(cond, InSegment):
        if ctx.accounts:
            raise ConditionError("accounts are not in segments: `in segment` is for people")
        return (
            "EXISTS (SELECT 1 FROM segment_members sm JOIN segments s ON s.id = sm.segment_id "
            f"WHERE s.workspace_id = {ctx.p(ctx.workspace_id)} AND s.name = {ctx.p(cond.name)} "
            "AND sm.person_id = p.id)"
        )
    if isinstance(cond, Predicate):
        # Tests can be NULL in SQL (a missing value); `not` needs them true or false.
        return f"coalesce({_predicate(cond, ctx)}, false)"
    return _did(cond, ctx)


# predicates on one JSON value ---------------------------------------------------------------
def _predicate(pred: Predicate, ctx: _Ctx) -> str:
    owner = "a" if ctx.accounts else "p"
    if pred.scope == "profile":
        column = f"{owner}.{pred.path[0]}_ms"
        return _profile(column, pred, ctx)
    if pred.scope == "account_trait":
        if ctx.accounts:
            raise ConditionError("account.… is for people; over accounts, name the trait itself")
        inner = _on_json("ax.traits", pred, ctx)
        # Uncorrelated: the workspace's accounts are few, and their members' ids can drive the
        # scan of persons (by primary key) instead of testing every person.
        return (
            "(p.id IN (SELECT am.person_id FROM account_members am JOIN accounts ax ON "
            "ax.workspace_id = am.workspace_id AND ax.group_id = am.group_id "
            f"WHERE ax.workspace_id = {ctx.p(ctx.workspace_id)} AND {inner}))"
        )
    return _on_json(f"{owner}.traits", pred, ctx)


def _profile(column: str, pred: Predicate, ctx: _Ctx) -> str:
    present = f"({column} IS NOT NULL AND {column} <> 0)"
    if pred.op == "exists":
        return present
    if pred.op == "not_exists":
        return f"(NOT {present})"
    if pred.op in ("before", "after"):
        sign = "<" if pred.op == "before" else ">"
        return f"({present} AND {column} {sign} {ctx.p(pred.value)})"
    amount, unit = pred.value
    edge = ctx.now_ms - amount * UNIT_MS[unit]
    sign = ">=" if pred.op == "within_last" else "<"
    return f"({present} AND {column} {sign} {ctx.p(edge)})"


def _on_json(document: str, pred: Predicate, ctx: _Ctx) -> str:
    """A trait test on the JSON column `document` at the predicate's path (objects only)."""
    if ctx.dialect == "postgres":
        # `->` with a text key steps into objects only (`#>` would read "0" as a list index).
        value = document
        for key in pred.path:
            value = f"({value} -> {ctx.p(key)}::text)"
        return _pg_scalar(value, pred, ctx)
    if any(not _plain(key) for key in pred.path):
        # SQLite's JSON paths cannot quote these characters: read the value in Python instead.
        path = _encode(list(pred.path)).decode()
        kind = f"cairn_type({document}, {ctx.p(path)})"
        value = f"cairn_value({document}, {ctx.p(path)})"
    else:
        path = "$" + "".join(f'."{key}"' for key in pred.path)
        kind = f"json_type({document}, {ctx.p(path)})"
        value = f"json_extract({document}, {ctx.p(path)})"
    return _sqlite_scalar(kind, value, pred, ctx)


def _plain(key: str) -> bool:
    """Can SQLite's quoted JSON path label hold the key?"""
    return not ('"' in key or "\\" in key or any(ord(c) < 32 for c in key))


def _negated(positive: str) -> str:
    return f"(NOT coalesce({positive}, false))"


def _sqlite_scalar(kind: str, value: str, pred: Predicate, ctx: _Ctx) -> str:
    op, expected = pred.op, pred.value
    present = f"(coalesce({kind}, 'null') <> 'null')"
    if op == "exists" or (op == "!=" and expected is None):
        return present
    if op == "not_exists" or (op == "=" and expected is None):
        return _negated(present)
    if op == "!=":
        return _negated(_sqlite_equal(kind, value, expected, ctx))
    if op == "=":
        return _sqlite_equal(kind, value, expected, ctx)
    if op == "in":
        # One IN list per type (a chain of ORs would overflow SQLite's expression depth).
        texts = [v for v in expected if isinstance(v, str)]
        numbers = [v for v in expected if _is_number(v)]
        flags = sorted({v for v in expected if isinstance(v, bool)})
        parts = [_sqlite_equal(kind, value, v, ctx) for v in flags]
        if texts:
            marks = ", ".join(ctx.p(v) for v in texts)
            parts.append(_then(f"{value} IN ({marks})", f"{kind} = 'text'"))
        if numbers:
            marks = ", ".join(ctx.p(v) for v in numbers)
            parts.append(_then(f"{value} IN ({marks})", f"{kind} IN ('integer', 'real')"))
        return "(" + (" OR ".join(parts) or "1 = 0") + ")"
    if op in ("contains", "starts_with", "ends_with"):
        needle = ascii_lower(expected)
        if needle == "":
            return f"({kind} = 'text')"
        if op == "contains":
            test = f"instr(lower({value}), {ctx.p(needle)}) > 0"
        elif op == "starts_with":
            test = f"substr(lower({value}), 1, {ctx.p(len(needle))}) = {ctx.p(needle)}"
        else:
            test = f"substr(lower({value}), -{ctx.p(len(needle))}) = {ctx.p(needle)}"
        return _then(test, f"{kind} = 'text'")
    if op in (">", ">=", "<", "<="):
        types = "('integer', 'real')" if _is_number(expected) else "('text')"
        return _then(f"{value} {op} {ctx.p(expected)}", f"{kind} IN {types}")
    return _time(f"cairn_time({kind}, {value})", pred, ctx)


def _sqlite_equal(kind: str, value: str, expected: Any, ctx: _Ctx) -> str:
    if expected is None:
        return "(1 = 0)"
    if isinstance(expected, bool):
        return f"({kind} = {ctx.p('true' if expected else 'false')})"
    if _is_number(expected):
        return _then(f"{value} = {ctx.p(expected)}", f"{kind} IN ('integer', 'real')")
    return _then(f"{value} = {ctx.p(expected)}", f"{kind} = 'text'")


def _then(test: str, kind_test: str) -> str:
    """`test AND kind_test`, reading the JSON a second time (for the type) only when `test`
    holds: SQLite evaluates both sides of an AND inside an expression, but CASE lazily."""
    return f"(CASE WHEN {test} THEN {kind_test} ELSE 0 END)"


def _time(moment: str, pred: Predicate, ctx: _Ctx) -> str:
    if pred.op == "before":
        return f"({moment} < {ctx.p(pred.value)})"
    if pred.op == "after":
        return f"({moment} > {ctx.p(pred.value)})"
    amount, unit = pred.value
    edge = ctx.now_ms - amount * UNIT_MS[unit]
    sign = ">=" if pred.op == "within_last" else "<"
    return f"({moment} {sign} {ctx.p(edge)})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pg_scalar(x: str, pred: Predicate, ctx: _Ctx) -> str:
    """A test on the jsonb expression `x` (NULL when missing)."""
    op, expected = pred.op, pred.value
    present = f"(coalesce(jsonb_typeof({x}), 'null') <> 'null')"
    if op == "exists" or (op == "!=" and expected is None):
        return present
    if op == "not_exists" or (op == "=" and expected is None):
        return _negated(present)
    if op == "!=":
        return _negated(_pg_equal(x, expected, ctx))
    if op == "=":
        return _pg_equal(x, expected, ctx)
    if op == "in":
        items = [_encode(v).decode() for v in expected if v is not None]
        if not items:
            return "(1 = 0)"
        return f"({x} = ANY({ctx.p(items)}::jsonb[]))"
    text = f"translate({x} #>> '{{}}', '{_UPPER}', '{_LOWER}')"
    if op in ("contains", "starts_with", "ends_with"):
        needle = ascii_lower(expected)
        if needle == "":
            return f"(jsonb_typeof({x}) = 'string')"
        if op == "contains":
            test = f"strpos({text}, {ctx.p(needle)}::text) > 0"
        elif op == "starts_with":
            test = f"left({text}, {ctx.p(len(needle))}::int) = {ctx.p(needle)}::text"
        else:
            test = f"right({text}, {ctx.p(len(needle))}::int) = {ctx.p(needle)}::text"
        return f"(CASE WHEN jsonb_typeof({x}) = 'string' THEN {test} ELSE false END)"
    if op in (">", ">=", "<", "<="):
        if _is_number(expected):
            test = f"({x} #>> '{{}}')::numeric {op} {ctx.p(expected)}::numeric"
            return f"(CASE WHEN jsonb_typeof({x}) = 'number' THEN {test} ELSE false END)"
        test = f'({x} #>> \'{{}}\') COLLATE "C" {op} {ctx.p(expected)}::text COLLATE "C"'
        return f"(CASE WHEN jsonb_typeof({x}) = 'string' THEN {test} ELSE false END)"
    return _time(f"cairn_time({x})", pred, ctx)


def _pg_equal(x: str, expected: Any, ctx: _Ctx) -> str:
    if expected is None:
        return "(1 = 0)"
    return f"({x} = {ctx.p(_encode(expected).decode())}::jsonb)"


# events ---------------------------------------------------------------------------------------
def _did(d: Did, ctx: _Ctx) -> str:
    """Compare the number of matching events (a per-person count) with the condition."""
    op, n = ("exactly", 0) if d.negate else (d.count_op, d.n)
    if op == "at_least" and n <= 0:
        return "(1 = 1)"
    needs_body = d.where is not None
    owner, events = _event_source(ctx, needs_body=needs_body)
    # person_events carries the name and type: filtering there uses its (workspace, event, time)
    # index (or (person, event, time) per person) and reads the log only for a `where`. The type
    # is read from the row already fetched: the log's when it is joined, else person_events'.
    named = "e" if ctx.accounts else "x"
    typed = "e" if ctx.accounts or needs_body else "x"
    clauses = [f"{named}.event = {ctx.p(d.event)}", f"{typed}.type = 'track'"]
    if ctx.accounts or not ctx.narrowed:  # a person's id is the workspace's already
        clauses.insert(0, f"x.workspace_id = {ctx.p(ctx.workspace_id)}")
    start, end = d.window.bounds(ctx.now_ms)
    if start is not None:
        clauses.append(f"x.timestamp_ms >= {ctx.p(start)}")
    if end is not None:
        clauses.append(f"x.timestamp_ms <= {ctx.p(end)}")
    if d.where is not None:
        clauses.append(_where(d.where, ctx))
    key = "a.group_id" if ctx.accounts else "p.id"
    if ctx.narrowed:
        # Cheaper tests beside this one have already cut the candidates: count each candidate's
        # own events rather than every owner's.
        # Counting stops where the answer is known (n, or n + 1), sparing the rest of a busy
        # person's events and their bodies.
        sign = {"at_least": ">=", "exactly": "=", "at_most": "<="}[op]
        enough = n if op == "at_least" else n + 1
        count = (
            f"((SELECT count(*) FROM (SELECT 1 FROM {events} WHERE x.{owner} = {key} AND "
            f"{' AND '.join(clauses)} LIMIT {ctx.p(enough)}) AS c) {sign} {ctx.p(n)})"
        )
        if ctx.accounts or op == "at_most" or n <= 0:
            return count
        return f"({_counted(d.event, n, start, end, ctx)} AND {count})"
    # Owners whose count passes `HAVING`; or, for tests true at zero, owners not failing it.
    if op == "at_least":
        member, having = True, f"count(*) >= {ctx.p(n)}"
    elif op == "exactly" and n > 0:
        member, having = True, f"count(*) = {ctx.p(n)}"
    elif op == "exactly":
        member, having = False, "count(*) >= 1"
    else:  # at_most n: not among those with more
        member, having = False, f"count(*) > {ctx.p(n)}"
    subquery = (
        f"SELECT x.{owner} FROM {events} WHERE {' AND '.join(clauses)} "
        f"GROUP BY x.{owner} HAVING {having}"
    )
    return f"({key} {'IN' if member else 'NOT IN'} ({subquery}))"


def _counted(event: str, n: int, start: int | None, end: int | None, ctx: _Ctx) -> str:
    """What the person's counters (`persons.event_counts`: name -> [count, first ms, last ms],
    all time) already rule out: fewer than `n` such events, or none inside the window. Reading
    one column spares the index probes and event bodies of most candidates; it never decides a
    match on its own."""
    tests = [(0, ">=", n)] + ([(2, ">=", start)] if start is not None else [])
    tests += [(1, "<=", end)] if end is not None else []
    if ctx.dialect == "postgres":
        entry = f"(p.event_counts -> {ctx.p(event)}::text)"
        parts = [f"({entry} ->> {i})::bigint {sign} {ctx.p(v)}" for i, sign, v in tests]
    elif _plain(event):
        label = '$."' + event + '"'
        parts = [f"json_extract(p.event_counts, {ctx.p(f'{label}[{i}]')}) {sign} {ctx.p(v)}"
                 for i, sign, v in tests]  # fmt: skip
    else:
        return "(1 = 1)"
    return f"coalesce({' AND '.join(parts)}, false)"


def _event_source(ctx: _Ctx, *, needs_body: bool) -> tuple[str, str]:
    """(the owner column, the FROM clause) of the events a `did` counts."""
    if ctx.accounts:
        return "group_id", "account_events x JOIN events e ON e.seq = x.seq"
    if needs_body:
        return "person_id", "person_events x JOIN events e ON e.seq = x.seq"
    return "person_id", "person_events x"


def _where(where: Condition, ctx: _Ctx) -> str:
    if ctx.dialect == "sqlite":
        condition = _encode(to_json(where)).decode()
        return f"cairn_where(e.body, {ctx.p(condition)}, {ctx.p(ctx.now_ms)})"
    return _pg_where(where, ctx)


def _pg_where(where: Condition, ctx: _Ctx) -> str:
    if isinstance(where, All):
        return "(" + " AND ".join(_pg_where(c, ctx) for c in where.items) + ")"
    if isinstance(where, AnyOf):
        return "(" + " OR ".join(_pg_where(c, ctx) for c in where.items) + ")"
    if isinstance(where, Not):
        return _negated(_pg_where(where.item, ctx))
    assert isinstance(where, Predicate)
    # Every value at the path, lists stepped into (jsonpath's lax mode) and unwrapped once.
    path = "$.properties" + "".join("." + _encode(key).decode() for key in where.path) + "[*]"
    values = f"jsonb_path_query(cairn_jsonb(e.body), {ctx.p(path)}::jsonpath) AS v(x)"
    nonnull = "jsonb_typeof(v.x) <> 'null'"
    op, expected = where.op, where.value
    if op == "not_exists" or (op == "=" and expected is None):
        return f"(NOT EXISTS (SELECT 1 FROM {values} WHERE {nonnull}))"
    if op == "exists" or (op == "!=" and expected is None):
        return f"(EXISTS (SELECT 1 FROM {values} WHERE {nonnull}))"
    if op == "!=":
        equal = _pg_equal("v.x", expected, ctx)
        return f"(NOT EXISTS (SELECT 1 FROM {values} WHERE {equal}))"
    test = _pg_scalar("v.x", where, ctx)
    return f"(EXISTS (SELECT 1 FROM {values} WHERE {nonnull} AND {test}))"
