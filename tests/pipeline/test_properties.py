"""Property tests: arrival order does not matter where the rules say it must not, and an unmerge
undoes its merge exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from cairn.identity.unmerge import unmerge
from cairn.storage.sqlite import SQLiteStorage
from tests.support.pipeline import Log, accounts_snapshot, msg, snapshot

T = 1_767_225_600_000
USERS = ["u0", "u1", "u2"]


@st.composite
def event_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events over a few people. Each anonymous id only ever appears with one user id (two users
    on one device is where arrival order legitimately decides), and the identifier limit is not
    reached."""
    events = []
    for _ in range(draw(st.integers(1, 25))):
        user = draw(st.sampled_from(USERS))
        anon = f"{user}-device-{draw(st.integers(0, 2))}"
        at = T + draw(st.integers(0, 50)) * 1000
        traits = draw(
            st.dictionaries(
                st.sampled_from(["plan", "firstName", "first_name", "city"]),
                st.one_of(st.none(), st.sampled_from(["a", "b", "c"]), st.integers(0, 3)),
                max_size=3,
            )
        )
        kind = draw(
            st.sampled_from(["anon_track", "identify", "user_track", "both_track", "group"])
        )
        if kind == "anon_track":
            events.append(msg("track", at=at, anonymousId=anon, event="Thing Viewed",
                              properties={"revenue": draw(st.integers(0, 9))}))  # fmt: skip
        elif kind == "identify":
            events.append(msg("identify", at=at, anonymousId=anon, userId=user, traits=traits))
        elif kind == "user_track":
            events.append(msg("track", at=at, userId=user, event="Order Completed",
                              context={"active": draw(st.booleans())}))  # fmt: skip
        elif kind == "both_track":
            events.append(msg("track", at=at, anonymousId=anon, userId=user, event="Thing Viewed"))
        else:
            events.append(msg("group", at=at, userId=user, groupId=f"g-{user}", traits=traits))
    return events


def _state(log: Log) -> tuple[dict[Any, Any], dict[str, Any]]:
    """Derived state without what depends on arrival by definition (sequence numbers, and the
    trait-change entries, which record what was new when each event was processed)."""
    assert log.workspace is not None
    by_seq = dict(log.store.rows("SELECT seq, message_id FROM events"))
    people = snapshot(log.store, log.workspace.id)
    for person in people.values():
        person["timeline"] = sorted(by_seq[seq] for seq in person["timeline"])
        del person["history"]
    return people, accounts_snapshot(log.store, log.workspace.id)


def _fresh() -> tuple[SQLiteStorage, Log]:
    storage = SQLiteStorage(Path(tempfile.mkdtemp()) / "cairn.db")
    storage.migrate()
    return storage, Log(storage)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sets(), data=st.data())
def test_any_arrival_order_gives_the_same_people(events: list[dict[str, Any]], data: Any) -> None:
    shuffled = data.draw(st.permutations(events))
    batch_size = data.draw(st.integers(1, 10))
    states = []
    for order in (events, shuffled):
        storage, log = _fresh()
        try:
            for start in range(0, len(order), batch_size):  # arriving in several requests
                log.send(*order[start : start + batch_size])
                log.run()
            states.append(_state(log))
        finally:
            storage.close()
    assert states[0] == states[1]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sets(), user=st.sampled_from(USERS), late=st.integers(0, 60))
def test_merge_then_unmerge_is_the_identity(
    events: list[dict[str, Any]], user: str, late: int
) -> None:
    storage, log = _fresh()
    try:
        assert log.workspace is not None
        ws = log.workspace.id
        log.send(*events, msg("track", at=T, anonymousId="stranger", event="Thing Viewed"))
        log.run()
        before = snapshot(log.store, ws)
        # an explicit alias: merges the stranger's person into the user's (creating it if new)
        log.send(msg("alias", at=T + late * 1000, previousId="stranger", userId=user))
        log.run()
        merges = log.store.rows("SELECT id, survivor_id FROM merges WHERE reason = 'alias'")
        target(float(len(merges)), label="merged")  # steer towards examples that really merge
        if not merges:  # the user did not exist yet: the alias linked the id, no merge to undo
            return
        ((merge_id, survivor),) = merges
        unmerge(log.store, ws, survivor, merge_id)
        after = snapshot(log.store, ws)
        alias_seq = log.storage.last_seq()
        for person in after.values():  # the alias event itself belongs to the user
            if alias_seq in person["timeline"]:
                person["timeline"].remove(alias_seq)
                person["events"] -= 1
                key = next(k for k, v in before.items() if ("user_id", user) in k)
                person["first_seen"] = before[key]["first_seen"]
                person["last_seen"] = before[key]["last_seen"]
        assert after == before
    finally:
        storage.close()
