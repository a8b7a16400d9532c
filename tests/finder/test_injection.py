"""Hostile input to the finder, on every backend: values, trait names, property paths, event and
segment names carrying SQL and JSON-path metacharacters are stored, then searched for, and found
exactly where they were stored (and nowhere else), without an error, with every table intact.
Limits (`in` lists, nesting, node count) are enforced with a ConditionError that says where."""

from __future__ import annotations

from typing import Any

import pytest

from cairn.finder.search import Search
from cairn.finder.segments import SegmentEngine, Segments
from cairn.finder.tree import MAX_DEPTH, MAX_IN_VALUES, MAX_NODES, ConditionError, from_json
from tests.finder.test_oracle import fold
from tests.support.pipeline import Log, msg

NOW = 1_772_323_200_000  # 2026-03-01T00:00:00Z
HOSTILE = [
    "'; DROP TABLE persons; --", "' OR '1'='1", "1; SELECT pg_sleep(5)", '"', "\\", 'a"b\\c', "$",
    "?", "%s", "%(x)s", ":p0", "%", "_", "..", "[*]", "$.a", "$[0]", "`x`", "``", "日本 ✓", "😀",
    "\u2028", "\\u0000", "NULL", "null", "*", "{}", "a\tb",
]  # fmt: skip
# Names JSON writes with an escape (a backslash, control characters): see the SQLite known bug.
ESCAPED = {"\\", 'a"b\\c', "\\u0000", "a\tb"}
NAMES = [s for s in HOSTILE if "." not in s]  # a dot separates a path's names
TABLES = ["persons", "events", "person_events", "accounts", "account_members", "identifiers",
          "segments", "segment_members"]  # fmt: skip


def _found(log: Log, condition: dict[str, Any]) -> list[str]:
    """The user ids of the people a search finds (sorted; a duplicate would show)."""
    assert log.workspace is not None
    ids = Search(log.storage, log.workspace.id, from_json(condition), now=NOW).ids()
    users = dict(log.store.rows("SELECT person_id, value FROM identifiers WHERE kind = 'user_id'"))
    return sorted(users[pid] for pid in ids)


def _assert_tables_intact(log: Log, people: int) -> None:
    for table in TABLES:
        log.store.rows(f"SELECT count(*) FROM {table}")
    assert log.store.rows("SELECT count(*) FROM persons")[0][0] == people


# Values -----------------------------------------------------------------------------------------
def test_hostile_values_are_found_exactly(log: Log) -> None:
    """Each person holds one hostile string as a trait, an account trait, an event property (also
    inside a list) and the name of an event; a segment is named after it."""
    for i, value in enumerate(HOSTILE):
        log.send(
            msg("identify", at=NOW - 3000, userId=f"p{i}", traits={"v": value}),
            msg("group", at=NOW - 2000, userId=f"p{i}", groupId=f"g{i}", traits={"v": value}),
            msg("track", at=NOW - 1000, userId=f"p{i}", event="Hostile",
                properties={"v": value, "items": [{"v": "other"}, {"v": value}]}),
        )  # fmt: skip
        if value.strip():
            log.send(msg("track", at=NOW - 1000, userId=f"p{i}", event=value))
    log.run()
    for i, value in enumerate(HOSTILE):
        alone = [f"p{i}"]
        containing = sorted(f"p{j}" for j, v in enumerate(HOSTILE) if fold(value) in fold(v))
        assert _found(log, {"trait": "v", "op": "=", "value": value}) == alone
        assert _found(log, {"trait": "v", "op": "in", "value": [value, "none"]}) == alone
        assert _found(log, {"trait": "v", "op": "contains", "value": value}) == containing
        assert _found(log, {"account_trait": "v", "op": "=", "value": value}) == alone
        for path in ("v", "items.v"):
            where = {"property": path, "op": "=", "value": value}
            assert _found(log, {"did": "Hostile", "where": where}) == alone
        where = {"property": "v", "op": "contains", "value": value}
        assert _found(log, {"did": "Hostile", "where": where}) == containing
        if value.strip():
            assert _found(log, {"did": value}) == alone
    _assert_tables_intact(log, len(HOSTILE))


def test_hostile_segment_names_are_found_exactly(log: Log) -> None:
    assert log.workspace is not None
    names = [s for s in HOSTILE if s.strip() == s and s]
    for i, name in enumerate(names):
        log.send(msg("identify", at=NOW - 1000, userId=f"p{i}", traits={"v": name}))
    log.run()
    segments = Segments(log.store)
    for name in names:
        segments.create(log.workspace.id, name, from_json({"trait": "v", "op": "=", "value": name}),
                        name)  # fmt: skip
    engine = SegmentEngine(log.store)
    while engine.step():
        pass
    for i, name in enumerate(names):
        assert _found(log, {"in_segment": name}) == [f"p{i}"]
    assert _found(log, {"in_segment": "' OR 1=1 --"}) == []
    _assert_tables_intact(log, len(names))


def test_values_are_never_operators(log: Log) -> None:
    """A value that looks like a query (a Mongo-style object, a list for `=`) is refused; one that
    looks like SQL or a JSON path is a string that no one has."""
    log.send(msg("identify", at=NOW - 1000, userId="ann", traits={"plan": "pro", "n": 1}))
    log.run()
    for value in ({"$ne": 1}, ["pro"], {"$gt": ""}):
        with pytest.raises(ConditionError, match="at /value"):
            from_json({"trait": "plan", "op": "=", "value": value})
    for value in ("pro' OR '1'='1", "$.plan", "$[*]", "%", "_", "*", "\\"):
        assert _found(log, {"trait": "plan", "op": "=", "value": value}) == []
        assert _found(log, {"trait": "plan", "op": "!=", "value": value}) == ["ann"]
        assert _found(log, {"trait": "plan", "op": "starts_with", "value": value}) == []
    assert _found(log, {"trait": "plan", "op": "contains", "value": ""}) == ["ann"]
    _assert_tables_intact(log, 1)


# Names and paths --------------------------------------------------------------------------------
def _named_world(log: Log) -> None:
    """Person n{i} holds the number i under hostile name i: as a trait, an account trait and an
    event property (also one level down, under `nested`)."""
    for i, name in enumerate(NAMES):
        log.send(
            msg("identify", at=NOW - 3000, userId=f"n{i}", traits={name: i}),
            msg("group", at=NOW - 2000, userId=f"n{i}", groupId=f"g{i}", traits={name: i}),
            msg("track", at=NOW - 1000, userId=f"n{i}", event="Named",
                properties={name: i, "nested": [{name: i}]}),
        )  # fmt: skip
    log.run()


def test_hostile_property_names_are_found_exactly(log: Log) -> None:
    _named_world(log)
    for i, name in enumerate(NAMES):
        for path in (name, f"nested.{name}"):
            where = {"property": path, "op": "=", "value": i}
            assert _found(log, {"did": "Named", "where": where}) == [f"n{i}"], repr(path)
            where = {"property": path, "op": "exists"}
            assert _found(log, {"did": "Named", "where": where}) == [f"n{i}"], repr(path)
    _assert_tables_intact(log, len(NAMES))


def test_hostile_trait_names_are_found_exactly(log: Log) -> None:
    _named_world(log)
    for i, name in enumerate(NAMES):
        if name in ESCAPED:
            continue  # test_trait_names_with_json_escapes
        for scope in ("trait", "account_trait"):
            assert _found(log, {scope: name, "op": "=", "value": i}) == [f"n{i}"], repr(name)
            assert _found(log, {scope: name, "op": "exists"}) == [f"n{i}"], repr(name)
    _assert_tables_intact(log, len(NAMES))


def test_trait_names_with_json_escapes(request: pytest.FixtureRequest, log: Log) -> None:
    _named_world(log)
    for i, name in enumerate(NAMES):
        if name in ESCAPED:
            for scope in ("trait", "account_trait"):
                assert _found(log, {scope: name, "op": "=", "value": i}) == [f"n{i}"], repr(name)


def test_paths_are_names_not_expressions(log: Log) -> None:
    """Path syntax of SQLite and jsonpath means nothing: `$`, `[*]`, `[0]`, `*` are plain names."""
    traits = {"$": {"a": "nested"}, "$.a": "dotted", "tags": ["x"], "a": {"b": "ab"}}
    log.send(msg("identify", at=NOW - 1000, userId="ann", traits=traits),
             msg("track", at=NOW - 1000, userId="ann", event="E", properties=traits))  # fmt: skip
    log.run()
    assert _found(log, {"trait": "$.a", "op": "=", "value": "nested"}) == ["ann"]
    assert _found(log, {"trait": "$.a", "op": "=", "value": "dotted"}) == []
    for path in ("tags.[*]", "tags.[0]", "a.*", "*.b", "$.tags", "$"):
        assert _found(log, {"trait": path, "op": "exists"}) == ([] if path != "$" else ["ann"])
    for path in ("tags.[*]", "tags.[0]", "a.*", "*.b", "$.tags"):
        assert _found(log, {"did": "E", "where": {"property": path, "op": "exists"}}) == []
    assert _found(log, {"did": "E", "where": {"property": "$.a", "op": "exists"}}) == ["ann"]
    for bad in ("..", "a..b", ".a", "a.", "a.b.c.d.e.f.g.h.i", ""):
        with pytest.raises(ConditionError, match="at /trait"):
            from_json({"trait": bad, "op": "exists"})
        with pytest.raises(ConditionError, match="at /where/property"):
            from_json({"did": "E", "where": {"property": bad, "op": "exists"}})
    _assert_tables_intact(log, 1)


def test_trait_paths_do_not_index_lists(request: pytest.FixtureRequest, log: Log) -> None:
    """Trait paths follow objects only (values.py): `tags.0` is the key "0", not the first tag."""
    traits = {"tags": ["x", "y"], "list": [{"city": "Oslo"}], "keyed": {"0": "zero"}}
    log.send(msg("identify", at=NOW - 1000, userId="ann", traits=traits))
    log.run()
    assert _found(log, {"trait": "keyed.0", "op": "=", "value": "zero"}) == ["ann"]
    for path in ("tags.0", "tags.1", "tags.-1", "list.0.city"):
        assert _found(log, {"trait": path, "op": "exists"}) == [], path
    assert _found(log, {"trait": "list.0.city", "op": "=", "value": "Oslo"}) == []


# NUL: jsonb cannot hold U+0000, SQLite's JSON functions stop at it ------------------------------
def test_nul_values_are_stored_as_replacement(request: pytest.FixtureRequest, log: Log) -> None:
    log.send(msg("identify", at=NOW - 1000, userId="nul", traits={"v": "a\x00b"}),
             msg("identify", at=NOW - 1000, userId="a", traits={"v": "a"}))  # fmt: skip
    log.run()
    # stored as "a\ufffdb" (PostgreSQL cannot hold U+0000; SQLite's JSON stops at it)
    assert _found(log, {"trait": "v", "op": "=", "value": "a"}) == ["a"]
    assert _found(log, {"trait": "v", "op": "=", "value": "a\ufffdb"}) == ["nul"]
    with pytest.raises(ConditionError, match="U\\+0000"):
        from_json({"trait": "v", "op": "=", "value": "a\x00b"})


def test_nul_in_names_is_a_clear_error(request: pytest.FixtureRequest, log: Log) -> None:
    log.send(msg("identify", at=NOW - 1000, userId="nul", traits={"k\x00": 1}))
    log.run()
    assert _found(log, {"trait": "k\ufffd", "op": "exists"}) == ["nul"]
    for condition in ({"trait": "k\x00", "op": "exists"}, {"account_trait": "k\x00", "op": "exists"},
                      {"in_segment": "a\x00b"}, {"did": "a\x00"}):  # fmt: skip
        with pytest.raises(ConditionError, match="U\\+0000"):
            from_json(condition)


def test_an_event_with_nul_does_not_break_where(request: pytest.FixtureRequest, log: Log) -> None:
    log.send(
        msg("track", at=NOW - 1000, userId="nul", event="Order", properties={"note": "a\x00b"}),
        msg("track", at=NOW - 1000, userId="big", event="Order", properties={"total": 50}),
    )
    log.run()
    where = {"property": "total", "op": ">", "value": 10}
    assert _found(log, {"did": "Order", "where": where}) == ["big"]


# Limits -----------------------------------------------------------------------------------------
def _nested(depth: int) -> dict[str, Any]:
    """`depth` levels of and / or / not above `plan = "pro"`; true for ann (plan "pro") and false
    for bob (plan "free") when the number of nots is even."""
    node: dict[str, Any] = {"trait": "plan", "op": "=", "value": "pro"}
    for level in range(depth):
        node = [
            {"and": [{"trait": "plan", "op": "exists"}, node]},
            {"or": [{"trait": "plan", "op": "not_exists"}, node]},
            {"not": node},
        ][level % 3]
    return node


def _depth(node: Any) -> int:
    children = [v for v in node.values() if isinstance(v, dict)] + [
        c for v in node.values() if isinstance(v, list) for c in v if isinstance(c, dict)
    ]
    return 1 + max((_depth(c) for c in children), default=-1)


def test_in_takes_up_to_1000_values(request: pytest.FixtureRequest, log: Log) -> None:
    log.send(msg("identify", at=NOW - 1000, userId="ann", traits={"t": "v999", "n": 999.0}))
    log.run()
    strings = [f"v{i}" for i in range(MAX_IN_VALUES)]
    assert _found(log, {"trait": "t", "op": "in", "value": strings}) == ["ann"]
    assert _found(log, {"trait": "n", "op": "in", "value": list(range(MAX_IN_VALUES))}) == ["ann"]
    many = {
        "or": [{"trait": "t", "op": "in", "value": strings[i:] + strings[:i]} for i in range(20)]
    }
    assert _found(log, many) == ["ann"]


def test_in_refuses_1001_values() -> None:
    too_many = {"trait": "t", "op": "in", "value": list(range(MAX_IN_VALUES + 1))}
    with pytest.raises(ConditionError, match=r"at most 1000 values at /and/1/value$"):
        from_json({"and": [{"trait": "t", "op": "exists"}, too_many]})
    where = {"property": "p", "op": "in", "value": too_many["value"]}
    with pytest.raises(ConditionError, match=r"at /where/value$"):
        from_json({"did": "E", "where": where})


def test_nesting_32_levels_deep_runs(request: pytest.FixtureRequest, log: Log) -> None:
    log.send(msg("identify", at=NOW - 1000, userId="ann", traits={"plan": "pro"}),
             msg("identify", at=NOW - 1000, userId="bob", traits={"plan": "free"}))  # fmt: skip
    log.run()
    deepest = _nested(MAX_DEPTH)
    assert _depth(deepest) == MAX_DEPTH
    assert _found(log, deepest) == ["ann"]
    nots: dict[str, Any] = {"trait": "plan", "op": "=", "value": "free"}
    for _ in range(MAX_DEPTH):
        nots = {"not": nots}
    assert _found(log, nots) == ["bob"]


def test_nesting_33_levels_deep_is_refused() -> None:
    with pytest.raises(ConditionError, match="nested at most 32 levels deep at /"):
        from_json(_nested(MAX_DEPTH + 1))
    nots: dict[str, Any] = {"trait": "plan", "op": "exists"}
    for _ in range(MAX_DEPTH + 1):
        nots = {"not": nots}
    with pytest.raises(ConditionError) as refused:
        from_json(nots)
    assert refused.value.at == "/not" * (MAX_DEPTH + 1)
    where: dict[str, Any] = {"property": "p", "op": "exists"}
    for _ in range(MAX_DEPTH):
        where = {"not": where}
    with pytest.raises(ConditionError) as refused:
        from_json({"did": "E", "where": where})
    assert refused.value.at == "/where" + "/not" * MAX_DEPTH


def test_500_nodes_run_and_501_are_refused(log: Log) -> None:
    log.send(msg("identify", at=NOW - 1000, userId="ann", traits={"n": 498}),
             msg("track", at=NOW - 1000, userId="ann", event="E", properties={"p": 498}))  # fmt: skip
    log.run()
    traits = [{"trait": "n", "op": "=", "value": i} for i in range(MAX_NODES - 1)]
    assert _found(log, {"or": traits}) == ["ann"]
    events = [{"did": "E", "where": {"property": "p", "op": ">=", "value": i}} for i in range(249)]
    assert _found(log, {"and": events}) == ["ann"]
    with pytest.raises(ConditionError, match=r"at most 500 nodes at /or/499$"):
        from_json({"or": [*traits, {"trait": "n", "op": "exists"}]})


# Error messages point at the place -------------------------------------------------------------
LEAF = {"trait": "plan", "op": "exists"}
ERRORS = [
    ({"and": [LEAF, {"trait": "plan", "op": "like", "value": "%"}]}, "unknown operator 'like'", "/and/1/op"),
    ({"or": [LEAF, {"not": {"sql": "DROP TABLE persons"}}]}, "unknown condition", "/or/1/not"),
    ({"and": [LEAF, {"or": [LEAF, {"trait": "a", "op": "=", "value": {"$ne": 1}}]}]}, "values are", "/and/1/or/1/value"),
    ({"did": "E", "where": {"and": [{"property": "p", "op": "exists"}, LEAF]}}, "inside `where`", "/where/and/1"),
    ({"did": "E", "count": {"op": "at_least", "n": -1}}, "a count is", "/count"),
    ({"did": "E", "count": {"op": "more_than", "n": 1}}, "count op", "/count"),
    ({"did": "E", "window": {"last": 0, "unit": "days"}}, "an amount of time", "/window"),
    ({"did": "E", "window": {"between": ["'; DROP", "2026-01-01"]}}, "a date is", "/window"),
    ({"did_not": "E", "count": {"op": "at_least", "n": 1}}, "did_not takes no count", ""),
    ({"did": "  "}, "an event name", "/did"),
    ({"trait": "plan", "op": "before", "value": "'; DROP TABLE persons; --"}, "a date is", "/value"),
    ({"trait": "plan", "op": "within_last", "value": {"amount": 1, "unit": "weeks"}}, "a unit", "/value"),
    ({"trait": "plan", "op": "exists", "value": 1}, "takes no value", "/value"),
    ({"trait": "plan", "op": ">", "value": True}, "takes a number or a string", "/value"),
    ({"trait": "plan", "op": "in", "value": []}, "non-empty list", "/value"),
    ({"profile": "email", "op": "exists"}, "unknown profile field", ""),
    ({"trait": "plan", "op": "exists", "extra": 1}, "unexpected key 'extra'", "/"),
    ({"and": []}, "non-empty list", ""),
    ({"not": [LEAF]}, "must be a JSON object", "/not"),
    ({"or": [LEAF, {"property": "p", "op": "exists"}]}, "belongs inside", "/or/1"),
    ([], "must be a JSON object", "/"),
    ("plan = 'pro'", "must be a JSON object", "/"),
]  # fmt: skip


@pytest.mark.parametrize(("condition", "message", "at"), ERRORS)
def test_errors_say_where(condition: Any, message: str, at: str) -> None:
    with pytest.raises(ConditionError) as refused:
        from_json(condition)
    assert refused.value.at == at
    assert message in str(refused.value)
    assert str(refused.value).endswith(f" at {at}") == bool(at)
    assert refused.value.code == "invalid_condition"
