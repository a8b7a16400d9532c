"""Traits by event time, counters, last seen, accounts and timelines, on every backend."""

from __future__ import annotations

from typing import Any

from cairn.profiles import read
from cairn.timeline import TimelineQuery, account_timeline, person_timeline
from tests.support.pipeline import Log, msg

T = 1_767_225_600_000


def who(log: Log, **ident: str) -> dict[str, Any]:
    assert log.workspace is not None
    pid = read.lookup(log.store, log.rules, log.workspace.id, dict(ident))
    return read.person_json(log.store, log.workspace.id, pid)


def test_late_old_events_never_overwrite_newer_traits(log: Log) -> None:
    log.send(msg("identify", at=T + 100, userId="u", traits={"plan": "pro", "city": "Oslo"}))
    log.run()
    log.send(
        msg("identify", at=T + 50, userId="u", traits={"plan": "free", "age": 40}),  # late, older
        msg("identify", at=T + 200, userId="u", traits={"city": None}),  # null clears
        msg("identify", at=T + 150, userId="u", traits={"city": "Bergen"}),  # older than the clear
    )
    log.run()
    person = who(log, user_id="u")
    assert person["traits"] == {"plan": "pro", "age": 40}
    assert person["first_seen"] == "2026-01-01T00:00:00.050Z"
    assert person["last_seen"] == "2026-01-01T00:00:00.200Z"


def test_reserved_camel_and_snake_case_traits_are_one_trait(log: Log) -> None:
    log.send(
        msg("identify", at=T, userId="u", traits={"firstName": "Ada", "created_at": "2020"}),
        msg("identify", at=T + 1, userId="u", traits={"first_name": "Augusta"}),
        msg("identify", at=T + 2, userId="u", traits={"createdAt": "2021", "user_hash": "x"}),
    )
    log.run()
    assert who(log, user_id="u")["traits"] == {"first_name": "Augusta", "created_at": "2021"}


def test_equal_timestamps_resolve_the_same_way_in_any_order(storage: Any) -> None:
    results = []
    for order in ([1, 2], [2, 1]):
        log = Log(storage)
        values = {1: "alpha", 2: "beta"}
        user = f"u-{order[0]}"
        log.send(*[msg("identify", at=T, userId=user, traits={"x": values[i]}) for i in order])
        log.run()
        results.append(who(log, user_id=user)["traits"])
    assert results[0] == results[1]


def test_inactive_events_do_not_move_last_seen(log: Log) -> None:
    log.send(
        msg("track", at=T, userId="u", event="Login Succeeded"),
        msg("track", at=T + 5000, userId="u", event="Invoice Sent", context={"active": False}),
    )
    log.run()
    person = who(log, user_id="u")
    assert person["last_seen"] == "2026-01-01T00:00:00.000Z"
    assert person["event_counts"]["Invoice Sent"]["count"] == 1
    assert person["events"] == 2


def test_event_counts_and_revenue(log: Log) -> None:
    log.send(
        msg("track", at=T + 3, userId="u", event="Order Completed", properties={"revenue": 10.1}),
        msg("track", at=T + 1, userId="u", event="Order Completed", properties={"revenue": "5"}),
        msg("track", at=T + 2, userId="u", event="Order Completed", properties={"revenue": "n/a"}),
        msg("track", at=T + 4, userId="u", event="Order Completed", properties={"revenue": True}),
    )
    log.run()
    person = who(log, user_id="u")
    assert person["revenue"] == 15.1
    assert person["event_counts"]["Order Completed"] == {
        "count": 4, "first": "2026-01-01T00:00:00.001Z", "last": "2026-01-01T00:00:00.004Z",
    }  # fmt: skip


def test_accounts_traits_members_and_b2b_events(log: Log) -> None:
    assert log.workspace is not None
    ws = log.workspace.id
    log.send(
        msg("group", at=T + 10, userId="ann", groupId="acme", traits={"name": "Acme", "plan": "pro"}),
        msg("group", at=T + 5, userId="ann", groupId="acme", traits={"plan": "trial"}),  # older
        msg("group", at=T + 20, userId="bo", groupId="acme"),
        msg("track", at=T + 30, userId="bo", event="Report Exported", context={"groupId": "acme"}),
        msg("track", at=T + 40, userId="cy", event="Report Exported", context={"groupId": "acme"}),
    )  # fmt: skip
    log.run()
    account = read.account_json(log.store, ws, "acme")
    assert account["traits"] == {"name": "Acme", "plan": "pro"}
    assert [(m["person_id"], m["joined_at"]) for m in account["members"]] == [
        (who(log, user_id="ann")["id"], "2026-01-01T00:00:00.005Z"),
        (who(log, user_id="bo")["id"], "2026-01-01T00:00:00.020Z"),
    ]
    assert account["event_counts"]["Report Exported"]["count"] == 2
    assert account["events"] == 5
    assert who(log, user_id="ann")["accounts"][0]["group_id"] == "acme"
    timeline = account_timeline(log.store, ws, "acme", TimelineQuery(limit=50))
    assert len(timeline["data"]) == 5  # members' events and cy's B2B event, once each
    assert read.list_accounts(log.store, ws, limit=10, cursor=None)["data"][0]["group_id"] == "acme"


def test_timeline_history_and_filters(log: Log) -> None:
    log.send(
        msg("page", at=T, anonymousId="a-1"),
        msg("identify", at=T + 1, anonymousId="a-1", userId="u", traits={"plan": "pro"}),
        msg("group", at=T + 2, userId="u", groupId="g"),
        msg("track", at=T + 3, anonymousId="a-2", event="Thing Done"),
        msg("track", at=T + 4, anonymousId="a-2", userId="u", event="Thing Done"),
    )
    log.run()
    person = who(log, user_id="u")
    items = person_timeline(log.store, person["id"], TimelineQuery(limit=50))["data"]
    kinds = [item["kind"] for item in items]
    assert kinds.count("event") == 5
    assert {"trait_changed", "joined_account", "merged"} <= set(kinds)
    changed = next(i for i in items if i["kind"] == "trait_changed")
    assert changed["data"] == {"changes": {"plan": {"from": None, "to": "pro"}}}
    only = TimelineQuery.parse(limit=50, events="Thing Done")
    assert [i["event"] for i in person_timeline(log.store, person["id"], only)["data"]] == [
        "Thing Done", "Thing Done",
    ]  # fmt: skip
    history = TimelineQuery.parse(limit=50, types="merged")
    assert [i["kind"] for i in person_timeline(log.store, person["id"], history)["data"]] == [
        "merged"
    ]
    window = TimelineQuery.parse(limit=50, since=str(T + 1), until="2026-01-01T00:00:00.002Z")
    got = person_timeline(log.store, person["id"], window)["data"]
    assert {i["at"] for i in got} <= {"2026-01-01T00:00:00.001Z", "2026-01-01T00:00:00.002Z"}


def test_timeline_pages_stay_correct_while_events_arrive(log: Log) -> None:
    log.send(*[msg("track", at=T + i * 10, userId="u", event=f"Step {i} Done") for i in range(30)])
    log.run()
    person = who(log, user_id="u")
    seen: list[int] = []
    page = person_timeline(log.store, person["id"], TimelineQuery.parse(limit=7))
    seen += [i["seq"] for i in page["data"] if i["kind"] == "event"]
    while page["next_cursor"]:
        # new events arrive between pages: newer ones, and a late one older than everything
        log.send(
            msg("track", at=T + 10_000 + len(seen), userId="u", event="New Done"),
            msg("track", at=T - 1000 - len(seen), userId="u", event="Late Done"),
        )
        log.run()
        page = person_timeline(
            log.store, person["id"], TimelineQuery.parse(limit=7, cursor=page["next_cursor"])
        )
        seen += [i["seq"] for i in page["data"] if i["kind"] == "event"]
    original = {
        r[0] for r in log.store.rows("SELECT seq FROM events WHERE event LIKE ?", ("Step%",))
    }
    assert len(seen) == len(set(seen)), "no item twice"
    assert original <= set(seen), "nothing of the original set skipped"
    times = [
        r[0]
        for seq in seen
        for r in log.store.rows("SELECT timestamp_ms FROM events WHERE seq = ?", (seq,))
    ]
    assert times == sorted(times, reverse=True), "newest first across pages"


def test_people_list_pages_by_last_seen(log: Log) -> None:
    assert log.workspace is not None
    log.send(*[msg("track", at=T + i, userId=f"u{i}", event="Thing Done") for i in range(12)])
    log.run()
    names: list[str] = []
    cursor = None
    while True:
        page = read.list_people(log.store, log.workspace.id, limit=5, cursor=cursor)
        names += [p["last_seen"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(names) == 12
    assert names == sorted(names, reverse=True)
