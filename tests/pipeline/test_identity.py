"""Identity scenarios on SQLite and PostgreSQL: signup, devices, shared devices, aliases, junk ids,
the identifier limit, merges and unmerges."""

from __future__ import annotations

from typing import Any

import pytest

from cairn.errors import Conflict, NotFound
from cairn.identity.rules import IdentityRules
from cairn.identity.unmerge import unmerge
from cairn.pipeline.runner import Pipeline
from cairn.profiles import read
from cairn.storage.people import decode_json
from cairn.timeline import TimelineQuery, person_timeline
from tests.support.pipeline import Log, iso, msg, snapshot

T = 1_767_225_600_000  # 2026-01-01


def who(log: Log, **ident: str) -> dict[str, Any]:
    assert log.workspace is not None
    pid = read.lookup(log.store, log.rules, log.workspace.id, dict(ident))
    return read.person_json(log.store, log.workspace.id, pid)


def ids(person: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["kind"], i["value"]) for i in person["identifiers"]}


def timeline_seqs(log: Log, person: dict[str, Any]) -> list[int]:
    query = TimelineQuery.parse(limit=200, types="track,page,identify,group,alias,screen")
    page = person_timeline(log.store, person["id"], query)
    return [item["seq"] for item in page["data"]]


def test_anonymous_browsing_signup_second_device_login(log: Log) -> None:
    log.send(
        msg("page", at=T, anonymousId="laptop", name="Home"),
        msg("track", at=T + 1, anonymousId="laptop", event="Product Viewed"),
        msg("identify", at=T + 2, anonymousId="laptop", userId="u1", traits={"email": "a@x.io"}),
        msg("track", at=T + 3, userId="u1", event="Order Completed", properties={"revenue": 30}),
        # a second device browses anonymously, then the user logs in there
        msg("page", at=T + 10, anonymousId="phone"),
        msg("track", at=T + 11, anonymousId="phone", event="Product Viewed"),
        msg("identify", at=T + 12, anonymousId="phone", userId="u1"),
        msg("track", at=T + 13, anonymousId="phone", userId="u1", event="Order Completed",
            properties={"revenue": "12.5"}),
    )  # fmt: skip
    log.run()
    person = who(log, user_id="u1")
    assert ids(person) == {("user_id", "u1"), ("anonymous_id", "laptop"), ("anonymous_id", "phone")}
    assert who(log, anonymous_id="phone")["id"] == person["id"]
    assert who(log, anonymous_id="laptop")["id"] == person["id"]
    assert person["events"] == 8
    assert person["revenue"] == 42.5
    assert person["event_counts"]["Order Completed"]["count"] == 2
    assert person["event_counts"]["Product Viewed"]["count"] == 2
    assert person["traits"] == {"email": "a@x.io"}
    assert [m["reason"] for m in person["merged_from"]] == ["identify"]
    assert len(timeline_seqs(log, person)) == 8
    assert person["first_seen"] == "2026-01-01T00:00:00.000Z"


def test_two_people_on_one_shared_device_are_never_merged(log: Log) -> None:
    log.send(
        msg("page", at=T, anonymousId="kiosk"),
        msg("identify", at=T + 1, anonymousId="kiosk", userId="alice", traits={"name": "Alice"}),
        msg("track", at=T + 2, anonymousId="kiosk", userId="alice", event="Song Played"),
        msg("identify", at=T + 3, anonymousId="kiosk", userId="bob", traits={"name": "Bob"}),
        msg("track", at=T + 4, anonymousId="kiosk", userId="bob", event="Song Played"),
    )
    log.run()
    alice, bob = who(log, user_id="alice"), who(log, user_id="bob")
    assert alice["id"] != bob["id"]
    assert ids(alice) == {("user_id", "alice"), ("anonymous_id", "kiosk")}
    assert ids(bob) == {("user_id", "bob")}
    assert alice["traits"] == {"name": "Alice"}
    assert bob["traits"] == {"name": "Bob"}
    assert alice["events"] == 3
    assert bob["events"] == 2


def test_alias_chain_and_alias_to_an_existing_person(log: Log) -> None:
    log.send(
        msg("track", at=T, anonymousId="anon-a", event="Signup Started"),
        msg("alias", at=T + 1, anonymousId="anon-a", previousId="anon-a", userId="b"),
        msg("alias", at=T + 2, previousId="b", userId="c"),
        msg("identify", at=T + 3, userId="c", traits={"plan": "pro"}),
        # two known people: alias merges them explicitly
        msg("identify", at=T + 4, userId="old-account", traits={"plan": "free", "city": "Oslo"}),
        msg("alias", at=T + 5, previousId="old-account", userId="c"),
    )
    log.run()
    person = who(log, user_id="c")
    assert ids(person) == {
        ("anonymous_id", "anon-a"), ("user_id", "b"), ("user_id", "c"), ("user_id", "old-account"),
    }  # fmt: skip
    assert who(log, anonymous_id="anon-a")["id"] == person["id"]
    # "free" was set later (T + 4) than "pro" (T + 3): event time decides, not the merge
    assert person["traits"] == {"plan": "free", "city": "Oslo"}
    assert "alias" in {m["reason"] for m in person["merged_from"]}


@pytest.mark.parametrize(
    "junk", ["null", "undefined", "0", "anonymous", "guest", "[object Object]", "", "   ", "NULL"]
)
def test_junk_ids_are_never_linked(log: Log, junk: str) -> None:
    log.send(
        msg("identify", at=T, anonymousId="dev-1", userId=junk, traits={"n": 1}),
        msg("identify", at=T + 1, anonymousId="dev-2", userId=junk, traits={"n": 2}),
        msg("track", at=T + 2, anonymousId=junk, userId="real", event="Thing Done"),
    )
    log.run()
    one, two = who(log, anonymous_id="dev-1"), who(log, anonymous_id="dev-2")
    assert one["id"] != two["id"]
    assert ("user_id", junk) not in ids(one)
    assert ids(who(log, user_id="real")) == {("user_id", "real")}
    with pytest.raises(NotFound):
        who(log, user_id=junk or "x")


def test_message_with_only_junk_ids_is_not_attributed(log: Log) -> None:
    log.send(msg("track", at=T, anonymousId="undefined", event="Ghost Seen"))
    log.run()
    assert log.pipeline is not None
    assert log.pipeline.totals.unattributed == 1
    assert log.store.rows("SELECT count(*) FROM persons")[0][0] == 0


def test_identifier_limit_refuses_links_and_merges(storage: Any) -> None:
    log = Log(storage, rules=IdentityRules(max_identifiers=3))
    log.send(
        msg("identify", at=T, anonymousId="d1", userId="busy"),
        msg("track", at=T + 1, anonymousId="d2", userId="busy", event="A Done"),
        # the person now has 3 identifiers: d3 is refused, its event still goes to busy
        msg("track", at=T + 2, anonymousId="d3", userId="busy", event="A Done"),
        # an anonymous person with two ids cannot merge into busy (3 + 2 > 3)
        msg("page", at=T + 3, anonymousId="d4"),
        msg("alias", at=T + 4, anonymousId="d4", previousId="d4", userId="side"),
        msg("track", at=T + 5, userId="side", event="B Done"),
        msg("alias", at=T + 6, previousId="side", userId="busy"),
    )
    log.run()
    busy = who(log, user_id="busy")
    assert ids(busy) == {("user_id", "busy"), ("anonymous_id", "d1"), ("anonymous_id", "d2")}
    assert busy["events"] == 4
    assert busy["identifier_limit"]["refused"] >= 3
    side = who(log, user_id="side")
    assert side["id"] != busy["id"]
    assert ids(side) == {("user_id", "side"), ("anonymous_id", "d4")}
    assert log.pipeline is not None
    assert log.pipeline.totals.merges_refused == 1
    assert log.pipeline.totals.identifiers_refused == 1


def test_email_links_when_enabled(storage: Any) -> None:
    log = Log(storage, rules=IdentityRules(link_email=True))
    log.send(
        msg("identify", at=T, anonymousId="web", traits={"email": "Ada@Example.com "}),
        msg("identify", at=T + 1, userId="ada", traits={"email": "ada@example.com"}),
    )
    log.run()
    ada = who(log, email="ADA@example.com")
    assert ada["id"] == who(log, anonymous_id="web")["id"] == who(log, user_id="ada")["id"]
    assert ("email", "ada@example.com") in ids(ada)


def test_merge_then_unmerge_restores_everything(log: Log) -> None:
    assert log.workspace is not None
    ws = log.workspace.id
    log.send(
        msg("page", at=T, anonymousId="anon-1"),
        msg("identify", at=T + 1, anonymousId="anon-1", traits={"plan": "trial", "color": "red"}),
        msg("track", at=T + 2, anonymousId="anon-1", event="Video Played"),
        msg("group", at=T + 3, anonymousId="anon-1", groupId="g-anon", traits={"name": "A"}),
        msg("identify", at=T + 4, userId="known", traits={"plan": "pro"}),
        msg("group", at=T + 5, userId="known", groupId="g-known"),
        msg("track", at=T + 6, userId="known", event="Order Completed", properties={"revenue": 9}),
    )
    log.run()
    before = snapshot(log.store, ws)
    log.send(msg("identify", at=T + 7, anonymousId="anon-1", userId="known", traits={"vip": True}))
    log.run()
    merged = who(log, user_id="known")
    assert ids(merged) == {("anonymous_id", "anon-1"), ("user_id", "known")}
    assert merged["traits"] == {"plan": "pro", "color": "red", "vip": True}
    assert {a["group_id"] for a in merged["accounts"]} == {"g-anon", "g-known"}
    (merge,) = merged["merged_from"]

    result = unmerge(log.store, ws, merged["id"], merge["merge_id"])
    after = snapshot(log.store, ws)
    # the merging identify itself carried userId "known": it stays with known (its primary id),
    # so known's state is "before" plus that one event; anon's is exactly as before
    anon_key = frozenset({("anonymous_id", "anon-1")})
    known_key = frozenset({("user_id", "known")})
    assert after[anon_key] == before[anon_key]
    expected_known = dict(before[known_key])
    assert after[known_key]["traits"] == {"plan": "pro", "vip": True}
    assert after[known_key]["timeline"] == [
        *expected_known["timeline"],
        after[known_key]["timeline"][-1],
    ]
    assert after[known_key]["accounts"] == expected_known["accounts"]
    restored = read.person_json(log.store, ws, result["restored_person_id"])
    assert restored["traits"] == {"plan": "trial", "color": "red"}
    assert restored["merged_from"] == []
    assert who(log, user_id="known")["merged_from"] == []

    # later events go where the rules now say, and the pair is not merged again
    log.send(
        msg("track", at=T + 8, anonymousId="anon-1", event="Video Played"),
        msg("track", at=T + 9, anonymousId="anon-1", userId="known", event="Order Completed"),
    )
    log.run()
    assert who(log, anonymous_id="anon-1")["id"] == restored["id"]
    assert who(log, anonymous_id="anon-1")["event_counts"]["Video Played"]["count"] == 2
    assert who(log, user_id="known")["event_counts"]["Order Completed"]["count"] == 2
    assert who(log, user_id="known")["id"] != restored["id"]

    with pytest.raises(Conflict):
        unmerge(log.store, ws, merged["id"], merge["merge_id"])
    with pytest.raises(NotFound):
        unmerge(log.store, ws, merged["id"], "mrg_nope")


def test_a_chain_of_merges_in_one_batch_moves_everything_to_the_last_survivor(log: Log) -> None:
    """A merged into B, then B into C, by two events of one batch (the batch writes its merges
    with a statement per table): every row of A and B ends on C, memberships keep the earliest
    join, each merge records the identifiers its merged person held when it ran, and undoing
    the merges one by one gives each person back."""
    assert log.workspace is not None
    ws = log.workspace.id
    log.send(
        msg("track", at=T, anonymousId="x", event="Thing Viewed"),
        msg("group", at=T + 1, anonymousId="x", groupId="g1"),
        msg("track", at=T + 2, anonymousId="y", event="Thing Viewed"),
        msg("group", at=T + 3, anonymousId="y", groupId="g1"),
        msg("group", at=T + 4, anonymousId="y", groupId="g2"),
        msg("identify", at=T + 5, userId="c", traits={"plan": "pro"}),
        msg("identify", at=T + 6, anonymousId="y", userId="u"),  # links u to y's person
    )
    log.run()
    a, b, c = (who(log, anonymous_id="x"), who(log, anonymous_id="y"), who(log, user_id="c"))
    assert len({a["id"], b["id"], c["id"]}) == 3
    log.send(
        msg("identify", at=T + 7, anonymousId="x", userId="u"),  # A into B
        msg("alias", at=T + 8, previousId="u", userId="c"),  # B into C
    )
    assert log.run() == 2
    person = who(log, anonymous_id="x")
    assert person["id"] == c["id"] == who(log, user_id="u")["id"]
    assert ids(person) == {("anonymous_id", "x"), ("anonymous_id", "y"), ("user_id", "u"),
                           ("user_id", "c")}  # fmt: skip
    assert [(m["group_id"], m["joined_at"]) for m in person["accounts"]] == [
        ("g1", iso(T + 1)), ("g2", iso(T + 4)),
    ]  # fmt: skip
    assert person["events"] == 9
    assert len(timeline_seqs(log, person)) == 9
    for table in ("identifiers", "person_events", "account_members"):
        left = log.store.rows(
            f"SELECT count(*) FROM {table} WHERE person_id IN (?, ?)", (a["id"], b["id"])
        )
        assert left[0][0] == 0, table
    value = dict(log.store.rows("SELECT id, value FROM identifiers WHERE workspace_id = ?", (ws,)))
    records = [
        (merged, survivor, reason, sorted(value[i] for i in decode_json(held)))
        for merged, survivor, reason, held in log.store.rows(
            "SELECT merged_id, survivor_id, reason, identifier_ids FROM merges ORDER BY seq"
        )
    ]
    assert records == [
        (a["id"], b["id"], "identify", ["x"]),
        (b["id"], c["id"], "alias", ["u", "x", "y"]),
    ]

    merges = {m["person_id"]: m["merge_id"] for m in person["merged_from"]}
    unmerge(log.store, ws, c["id"], merges[b["id"]])
    assert ids(who(log, user_id="c")) == {("user_id", "c")}
    back = who(log, anonymous_id="y")
    assert back["id"] == b["id"] == who(log, anonymous_id="x")["id"]
    assert [(m["group_id"], m["joined_at"]) for m in back["accounts"]] == [
        ("g1", iso(T + 1)), ("g2", iso(T + 4)),
    ]  # fmt: skip
    unmerge(log.store, ws, b["id"], back["merged_from"][0]["merge_id"])
    assert who(log, anonymous_id="x")["id"] == a["id"]
    assert [m["group_id"] for m in who(log, anonymous_id="x")["accounts"]] == ["g1"]
    assert ids(who(log, anonymous_id="y")) == {("anonymous_id", "y"), ("user_id", "u")}


def test_unmerge_of_a_merge_without_new_events_is_the_identity(log: Log) -> None:
    assert log.workspace is not None
    ws = log.workspace.id
    log.send(
        msg("track", at=T, anonymousId="x", event="Page Liked"),
        msg("identify", at=T + 1, anonymousId="x", traits={"a": 1}),
        msg("identify", at=T + 2, userId="y", traits={"a": 2, "b": 3}),
    )
    log.run()
    before = snapshot(log.store, ws)
    log.send(msg("alias", at=T + 3, previousId="x", userId="y"))
    log.run()
    person = who(log, user_id="y")
    unmerge(log.store, ws, person["id"], person["merged_from"][0]["merge_id"])
    after = snapshot(log.store, ws)
    y = frozenset({("user_id", "y")})
    # the alias event is y's: everything else is as before the merge
    alias_seq = after[y]["timeline"][-1]
    after[y]["timeline"].remove(alias_seq)
    after[y]["events"] -= 1
    after[y]["first_seen"] = before[y]["first_seen"]
    after[y]["last_seen"] = before[y]["last_seen"]
    assert after == before


def test_ids_linked_through_a_merged_id_follow_it_back(log: Log) -> None:
    """An id linked after a merge *through* one of the merged person's ids (a new device logging
    in as the merged user) would have joined that person had there been no merge: it goes back."""
    assert log.workspace is not None
    ws = log.workspace.id
    log.send(
        msg("identify", at=T, userId="keeper", traits={"plan": "pro"}),
        msg("identify", at=T + 1, userId="old-login", traits={"plan": "free"}),
        msg("alias", at=T + 2, previousId="old-login", userId="keeper"),
        msg("identify", at=T + 3, userId="old-login", anonymousId="new-device"),
        msg("track", at=T + 4, anonymousId="new-device", event="Thing Done"),
    )
    log.run()
    keeper = who(log, user_id="keeper")
    assert ("anonymous_id", "new-device") in ids(keeper)
    unmerge(log.store, ws, keeper["id"], keeper["merged_from"][0]["merge_id"])
    old = who(log, user_id="old-login")
    assert ids(old) == {("user_id", "old-login"), ("anonymous_id", "new-device")}
    assert old["event_counts"] == {
        "Thing Done": {"count": 1, "first": "2026-01-01T00:00:00.004Z",
                       "last": "2026-01-01T00:00:00.004Z"},
    }  # fmt: skip
    assert old["traits"] == {"plan": "free"}
    assert who(log, user_id="keeper")["traits"] == {"plan": "pro"}


def test_unknown_person_and_identifier_answer_not_found(log: Log) -> None:
    assert log.workspace is not None
    with pytest.raises(NotFound):
        read.person_json(log.store, log.workspace.id, 12345)
    with pytest.raises(NotFound):
        who(log, user_id="nobody")


def test_requires_hash_source_links_only_on_identify(log: Log) -> None:
    """On a verification-requiring source, a track carrying a userId cannot attach the browser."""
    assert log.source is not None
    assert log.workspace is not None
    log.storage.set_source_identity(log.workspace.id, log.source.id, secret="s3cret", require=True)
    log.send(
        msg("page", at=T, anonymousId="browser"),
        msg("track", at=T + 1, anonymousId="browser", userId="victim", event="Thing Done"),
    )
    log.run()
    assert who(log, anonymous_id="browser")["id"] != who(log, user_id="victim")["id"]
    assert isinstance(log.pipeline, Pipeline)
