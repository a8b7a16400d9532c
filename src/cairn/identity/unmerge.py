"""Undo a merge exactly: identifiers, events and history go back, both persons are recomputed.

What a merge moved is known: the identifiers it recorded, plus every identifier linked later
*through* one of them (`via_id`), since without the merge those would have joined the merged person.
Events and trait/account history follow their identifiers. Both persons' profiles and memberships
are then recomputed from their events with the same fold the pipeline uses, so they are what they
would be had the merge never happened. The pair is blocked from automatic re-merging, and the
pipeline's cursor version is bumped so a batch in flight is redone against the new state.
"""

from __future__ import annotations

from typing import Any

from cairn.errors import Conflict, NotFound
from cairn.ingest.timestamps import now_ms
from cairn.pipeline.batch import UPSERT_PERSON, PersonRow, person_from_row, person_params
from cairn.pipeline.event import Event
from cairn.pipeline.stages import profiles
from cairn.profiles.state import Profile
from cairn.storage.base import LogEntry
from cairn.storage.people import MARK_DIRTY, PERSON_COLUMNS, PeopleStore, Tx, decode_json
from cairn.storage.sql import EVENT_COLUMNS

__all__ = ["recompute", "unmerge"]


def unmerge(store: PeopleStore, workspace_id: int, person_id: int, merge_id: str) -> dict[str, Any]:
    """Undo merge `merge_id`, listed on person `person_id`; return both persons' ids."""
    with store.tx() as tx:
        rows = tx.all(
            "SELECT survivor_id, merged_id, identifier_ids, undone_ms FROM merges "
            "WHERE id = ? AND workspace_id = ?",
            (merge_id, workspace_id),
        )
        if not rows:
            raise NotFound(f"no merge {merge_id!r}")
        survivor_id, merged_id, identifier_json, undone = rows[0]
        if undone is not None:
            raise Conflict(f"merge {merge_id!r} was already undone", code="already_unmerged")
        root = _root(tx, survivor_id)
        if root != _root(tx, person_id):
            raise NotFound(f"merge {merge_id!r} is not listed on person {person_id}")
        moved = _closure(tx, root, [int(i) for i in decode_json(identifier_json)])
        subtree = _subtree(tx, merged_id)
        now = now_ms()
        _move(tx, moved, root, merged_id)
        for pid in subtree - {merged_id}:
            tx.run("UPDATE persons SET merged_into = ? WHERE id = ?", (merged_id, pid))
        tx.run("UPDATE persons SET merged_into = NULL WHERE id = ?", (merged_id,))
        tx.run("UPDATE merges SET undone_ms = ? WHERE id = ?", (now, merge_id))
        for a, b in {(root, merged_id), (survivor_id, merged_id)}:
            tx.run(
                "INSERT INTO identity_blocks (workspace_id, person_a, person_b, merge_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (workspace_id, min(a, b), max(a, b), merge_id),
            )
        for pid, other in ((root, merged_id), (merged_id, root)):
            tx.run(
                "INSERT INTO person_history (workspace_id, person_id, identifier_id, seq, at_ms, "
                "kind, data) VALUES (?, ?, NULL, NULL, ?, 'unmerged', {j})",
                (workspace_id, pid, now, store.json({"merge_id": merge_id, "person_id": other})),
            )
        recompute(store, tx, root)
        recompute(store, tx, merged_id)
        for pid in {root, merged_id} | subtree:
            tx.run(MARK_DIRTY, (pid, workspace_id, now))
        store.bump(tx)
    return {"merge_id": merge_id, "person_id": root, "restored_person_id": merged_id}


def _root(tx: Tx, person_id: int) -> int:
    rows = tx.all("SELECT merged_into FROM persons WHERE id = ?", (person_id,))
    if not rows:
        raise NotFound(f"no person {person_id}")
    return int(rows[0][0]) if rows[0][0] is not None else person_id


def _closure(tx: Tx, root: int, ids: list[int]) -> set[int]:
    """The merge's identifiers still on the root, plus those linked through them since."""
    found: set[int] = set()
    frontier = ids
    while frontier:
        marks = ",".join("?" * len(frontier))
        current = [
            row[0]
            for row in tx.all(
                f"SELECT id FROM identifiers WHERE person_id = ? AND id IN ({marks})",
                (root, *frontier),
            )
            if row[0] not in found
        ]
        found.update(current)
        if not current:
            break
        marks = ",".join("?" * len(current))
        frontier = [
            row[0]
            for row in tx.all(
                f"SELECT id FROM identifiers WHERE person_id = ? AND via_id IN ({marks})",
                (root, *current),
            )
            if row[0] not in found
        ]
    return found


def _subtree(tx: Tx, person_id: int) -> set[int]:
    """The person and everyone merged into it by merges still in effect."""
    found = {person_id}
    frontier = [person_id]
    while frontier:
        marks = ",".join("?" * len(frontier))
        frontier = [
            row[0]
            for row in tx.all(
                f"SELECT merged_id FROM merges WHERE survivor_id IN ({marks}) "
                "AND undone_ms IS NULL",
                frontier,
            )
            if row[0] not in found
        ]
        found.update(frontier)
    return found


def _move(tx: Tx, identifier_ids: set[int], source: int, person_id: int) -> None:
    """Identifiers on `source`, with their events and history, over to `person_id`."""
    ids = sorted(identifier_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        tx.run(f"UPDATE identifiers SET person_id = ? WHERE id IN ({marks})", (person_id, *chunk))
        # An event's row is on its identifier's person (merges move both): naming the person
        # reads its rows through the timeline index; PostgreSQL has none by identifier (0008).
        tx.run(
            "UPDATE person_events SET person_id = ? WHERE person_id = ? "
            f"AND identifier_id IN ({marks})",
            (person_id, source, *chunk),
        )
        tx.run(
            f"UPDATE person_history SET person_id = ? WHERE identifier_id IN ({marks})",
            (person_id, *chunk),
        )


def recompute(store: PeopleStore, tx: Tx, person_id: int) -> None:
    """Rebuild a person's profile, counters and memberships from their events."""
    rows = tx.all(f"SELECT {PERSON_COLUMNS} FROM persons WHERE id = ?", (person_id,))
    person: PersonRow = person_from_row(rows[0])
    person.profile = Profile()
    joined: dict[str, int] = {}
    events = tx.all(
        f"SELECT {EVENT_COLUMNS} FROM person_events pe JOIN events e ON e.seq = pe.seq "
        "WHERE pe.person_id = ? ORDER BY pe.seq",
        (person_id,),
    )
    for row in events:
        ev = Event.from_log(LogEntry(*row))
        profiles.fold(person.profile, ev)
        group_id = ev.group_id
        if ev.type == "group" and group_id is not None:
            joined[group_id] = min(joined.get(group_id, ev.timestamp_ms), ev.timestamp_ms)
    counts = tx.all(
        "SELECT count(*), coalesce(sum(CASE WHEN kind = 'user_id' THEN 1 ELSE 0 END), 0) "
        "FROM identifiers WHERE person_id = ?",
        (person_id,),
    )[0]
    person.identifiers, person.user_ids = int(counts[0]), int(counts[1])
    tx.run(UPSERT_PERSON, person_params(store, person, now_ms()))
    tx.run("DELETE FROM account_members WHERE person_id = ?", (person_id,))
    for group_id, at in joined.items():
        tx.run(
            "INSERT INTO account_members (workspace_id, group_id, person_id, joined_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (person.workspace_id, group_id, person_id, at),
        )
