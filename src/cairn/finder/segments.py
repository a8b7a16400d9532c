"""Saved segments whose membership is kept live.

- Definitions: `Segments` (create, update, delete, list, members).
- `SegmentEngine.step()` runs beside the pipeline (in its thread, under its lease) and does three
  kinds of work, each in small slices so the pipeline never waits long:
  1. persons the pipeline changed (`dirty_persons`, written in the pipeline's own transaction) are
     re-evaluated against every segment of their workspace;
  2. due timers: a window passing can change membership with no event arriving, and the evaluator
     says when (`segment_timers`), so those persons are re-evaluated then;
  3. backfill: a new or changed segment is evaluated over every person, in pages, with progress.
- Entering and leaving are written to the person's timeline (`entered_segment`, `left_segment`) and
  published as signals (`signals`) that automations consume.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from cairn.errors import Conflict, NotFound
from cairn.finder.evaluate import PersonData, evaluate, event_names, segment_names
from cairn.finder.functions import properties_of
from cairn.finder.search import Search
from cairn.finder.tree import All, AnyOf, Condition, Did, Not, Predicate, from_json, to_json
from cairn.ids import parse_int
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.storage.people import PeopleStore, Tx, decode_json

__all__ = ["Segment", "SegmentEngine", "Segments", "load_people"]

log = logging.getLogger(__name__)
MAX_SEGMENTS = 500
PAGE = 500
DIRTY_PAGE = 1_000  # changed persons per transaction (a commit each)
SEEN_MAX = 200_000  # persons whose inputs the engine remembers
BULK = 5_000  # persons per page of a backfill that the compiled SQL answers
STEP_S = 0.25  # one step's work on dirty persons, so the pipeline's batches are not starved


@dataclass(frozen=True)
class Segment:
    id: int
    workspace_id: int
    name: str
    condition: Condition
    text: str
    version: int
    backfill_state: str
    backfill_done: int
    backfill_total: int
    backfill_after: int
    created_ms: int
    updated_ms: int

    def json(self, members: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "query": self.text,
            "condition": to_json(self.condition),
            "version": self.version,
            "backfill": {
                "state": self.backfill_state,
                "done": self.backfill_done,
                "total": self.backfill_total,
            },
            "created_at": format_ms(self.created_ms),
            "updated_at": format_ms(self.updated_ms),
        }
        if members is not None:
            body["members"] = members
        return body


_COLUMNS = (
    "id, workspace_id, name, condition, text, version, backfill_state, backfill_done, "
    "backfill_total, backfill_after, created_ms, updated_ms"
)


def _segment(row: Any, parsed: dict[tuple[int, int], Condition] | None = None) -> Segment:
    """A segment from its row; `parsed` caches conditions by (id, version) for one database."""
    (sid, ws, name, condition, text, version, state, done, total, after, created,
     updated) = row  # fmt: skip
    cache = parsed if parsed is not None else {}
    read = cache.get((sid, version))
    if read is None:
        if len(cache) > 10_000:
            cache.clear()
        read = cache[(sid, version)] = from_json(decode_json(condition))
    return Segment(sid, ws, name, read, text, version, state, done, total, after, created,
                   updated)  # fmt: skip


class Segments:
    """Segment definitions of a database."""

    def __init__(self, store: PeopleStore) -> None:
        self.store = store
        self._parsed: dict[tuple[int, int], Condition] = {}  # the engine lists on every step

    def list(self, workspace_id: int) -> list[Segment]:
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM segments WHERE workspace_id = ? ORDER BY id", (workspace_id,)
        )
        return [_segment(row, self._parsed) for row in rows]

    def get(self, workspace_id: int, segment_id: int) -> Segment:
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM segments WHERE workspace_id = ? AND id = ?",
            (workspace_id, segment_id),
        )
        if not rows:
            raise NotFound(f"no segment {segment_id}")
        return _segment(rows[0])

    def member_count(self, segment_id: int) -> int:
        rows = self.store.rows(
            "SELECT count(*) FROM segment_members WHERE segment_id = ?", (segment_id,)
        )
        return int(rows[0][0])

    def of_person(self, workspace_id: int, person_id: int) -> Sequence[dict[str, Any]]:
        """The segments a person is in now, with when they entered."""
        rows = self.store.rows(
            "SELECT s.id, s.name, m.entered_ms FROM segment_members m JOIN segments s "
            "ON s.id = m.segment_id WHERE s.workspace_id = ? AND m.person_id = ? ORDER BY s.name",
            (workspace_id, person_id),
        )
        return [
            {"id": sid, "name": name, "entered_at": format_ms(entered)}
            for sid, name, entered in rows
        ]

    def _check(self, workspace_id: int, name: str, condition: Condition, own: int | None) -> None:
        existing = {s.name: s for s in self.list(workspace_id)}
        if own is None and len(existing) >= MAX_SEGMENTS:
            raise Conflict(f"a workspace has at most {MAX_SEGMENTS} segments")
        graph = {s.name: segment_names(s.condition) for s in existing.values() if s.id != own}
        graph[name] = segment_names(condition)
        for ref in graph[name]:
            if ref not in graph:
                raise NotFound(f'the condition refers to segment "{ref}", which does not exist')
        # no cycles: walk from the new definition
        stack, seen = [(name, 0)], set()
        while stack:
            current, depth = stack.pop()
            if depth > 16:
                raise Conflict("segments refer to each other more than 16 levels deep")
            for ref in graph.get(current, ()):
                if ref == name:
                    raise Conflict(f'segment "{name}" would contain itself (through "{current}")')
                if (ref, depth) not in seen:
                    seen.add((ref, depth))
                    stack.append((ref, depth + 1))

    def create(self, workspace_id: int, name: str, condition: Condition, text: str) -> Segment:
        name = _clean_name(name)
        self._check(workspace_id, name, condition, None)
        now = now_ms()
        try:
            with self.store.tx() as tx:
                rows = tx.all(
                    "INSERT INTO segments (workspace_id, name, condition, text, created_ms, "
                    f"updated_ms) VALUES (?, ?, {{j}}, ?, ?, ?) RETURNING {_COLUMNS}",
                    (workspace_id, name, self.store.json(to_json(condition)), text, now, now),
                )
        except Exception as exc:
            if _unique_violation(exc):
                raise Conflict(f'a segment named "{name}" already exists') from None
            raise
        return _segment(rows[0])

    def update(
        self,
        workspace_id: int,
        segment_id: int,
        *,
        name: str | None,
        condition: Condition | None,
        text: str | None,
    ) -> Segment:
        current = self.get(workspace_id, segment_id)
        new_name = _clean_name(name) if name is not None else current.name
        new_condition = condition if condition is not None else current.condition
        self._check(workspace_id, new_name, new_condition, segment_id)
        if new_name != current.name and self._referenced(workspace_id, current.name):
            raise Conflict(f'other segments refer to "{current.name}": it cannot be renamed')
        changed = condition is not None and to_json(condition) != to_json(current.condition)
        try:
            with self.store.tx() as tx:
                tx.run(
                    "UPDATE segments SET name = ?, condition = {j}, text = ?, updated_ms = ?, "
                    "version = version + ?, backfill_state = CASE WHEN ? = 1 THEN 'pending' "
                    "ELSE backfill_state END, backfill_after = CASE WHEN ? = 1 THEN 0 "
                    "ELSE backfill_after END, backfill_done = CASE WHEN ? = 1 THEN 0 "
                    "ELSE backfill_done END WHERE id = ?",
                    (new_name, self.store.json(to_json(new_condition)),
                     text if text is not None else current.text, now_ms(), int(changed),
                     int(changed), int(changed), int(changed), segment_id),
                )  # fmt: skip
        except Exception as exc:
            if _unique_violation(exc):
                raise Conflict(f'a segment named "{new_name}" already exists') from None
            raise
        return self.get(workspace_id, segment_id)

    def _referenced(self, workspace_id: int, name: str) -> bool:
        return any(name in segment_names(s.condition) for s in self.list(workspace_id))

    def delete(self, workspace_id: int, segment_id: int) -> None:
        segment = self.get(workspace_id, segment_id)
        users = [
            s.name for s in self.list(workspace_id) if segment.name in segment_names(s.condition)
        ]
        if users:
            raise Conflict(f'segment "{users[0]}" refers to "{segment.name}": delete that first')
        with self.store.tx() as tx:
            for table in ("segment_members", "segment_timers"):
                tx.run(f"DELETE FROM {table} WHERE segment_id = ?", (segment_id,))
            tx.run("DELETE FROM segments WHERE id = ?", (segment_id,))

    def members(
        self, workspace_id: int, segment_id: int, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        self.get(workspace_id, segment_id)
        after = 0
        if cursor:
            found = parse_int(cursor)
            if found is None:
                from cairn.errors import BadRequest

                raise BadRequest(f"invalid cursor {cursor!r}", code="invalid_cursor")
            after = found
        rows = self.store.rows(
            "SELECT m.person_id, m.entered_ms, p.traits, p.last_seen_ms FROM segment_members m "
            "JOIN persons p ON p.id = m.person_id WHERE m.segment_id = ? AND m.person_id > ? "
            "ORDER BY m.person_id LIMIT ?",
            (segment_id, after, limit),
        )
        data = [
            {"id": pid, "entered_at": format_ms(entered), "traits": decode_json(traits),
             "last_seen": format_ms(last) if last else None}
            for pid, entered, traits, last in rows
        ]  # fmt: skip
        next_cursor = str(rows[-1][0]) if len(rows) == limit else None
        return {"data": data, "next_cursor": next_cursor, "total": self.member_count(segment_id)}


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise Conflict("a segment name is 1 to 200 characters", code="invalid_name")
    return name


def _unique_violation(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unique" in text or "duplicate key" in text


# loading what conditions look at ---------------------------------------------------------------
def load_people(
    store: PeopleStore,
    person_ids: Sequence[int],
    conditions: Iterable[Condition],
    now: int,
    events_of: dict[str, set[int]] | None = None,
) -> dict[int, PersonData | None]:
    """PersonData for each id (None for a person merged into another, or gone). With
    `events_of`, a name's events are read only for the persons it lists."""
    conditions = list(conditions)
    out: dict[int, PersonData | None] = {pid: None for pid in person_ids}
    if not person_ids:
        return out
    ids = list(person_ids)
    marks = ",".join("?" * len(ids))
    for pid, traits, first, last, merged in store.rows(
        f"SELECT id, traits, first_seen_ms, last_seen_ms, merged_into FROM persons "
        f"WHERE id IN ({marks})",
        ids,
    ):
        if merged is None:
            out[pid] = PersonData(decode_json(traits), first or None, last or None)
    live = {pid: data for pid, data in out.items() if data is not None}
    if not live:
        return out
    marks = ",".join("?" * len(live))
    for pid, traits in store.rows(
        "SELECT m.person_id, a.traits FROM account_members m JOIN accounts a "
        "ON a.workspace_id = m.workspace_id AND a.group_id = m.group_id "
        f"WHERE m.person_id IN ({marks})",
        list(live),
    ):
        live[pid].account_traits.append(decode_json(traits))
    names: dict[str, tuple[bool, int | None]] = {}  # name -> (needs properties, since)
    for cond in conditions:
        for did in _dids(cond):
            props, since = names.get(did.event, (False, now))
            start = did.window.bounds(now)[0]
            since = None if since is None or start is None else min(since, start)
            names[did.event] = (props or did.where is not None, since)
    for name, (props, since) in names.items():
        # One read per name through person_events (person, event, time), from that name's
        # earliest window, with the log's bodies only where a `where` reads properties.
        whose = [pid for pid in live if events_of is None or pid in events_of.get(name, ())]
        if not whose:
            continue
        for pid, ts, body in store.rows(
            f"SELECT x.person_id, x.timestamp_ms, {'e.body' if props else 'NULL'} "
            f"FROM person_events x{' JOIN events e ON e.seq = x.seq' if props else ''} "
            f"WHERE x.person_id IN ({','.join('?' * len(whose))}) AND x.event = ? "
            "AND x.type = 'track' AND x.timestamp_ms >= ?",
            [*whose, name, since if since is not None else -(2**62)],
        ):
            properties = (properties_of(body) or {}) if props else {}
            live[pid].events.setdefault(name, []).append((ts, properties))
    if any(segment_names(c) for c in conditions):
        for pid, name in store.rows(
            "SELECT m.person_id, s.name FROM segment_members m JOIN segments s "
            f"ON s.id = m.segment_id WHERE m.person_id IN ({marks})",
            list(live),
        ):
            live[pid].segments.add(name)
    return out


def _dids(cond: Condition) -> list[Did]:
    from cairn.finder.tree import All, AnyOf, Not

    if isinstance(cond, All | AnyOf):
        return [d for c in cond.items for d in _dids(c)]
    if isinstance(cond, Not):
        return _dids(cond.item)
    return [cond] if isinstance(cond, Did) else []


# the engine -------------------------------------------------------------------------------------
class SegmentEngine:
    """Keeps memberships live; `step()` does a slice of work and says whether there was any."""

    def __init__(self, store: PeopleStore) -> None:
        self.store = store
        self.segments = Segments(store)
        self.evaluations = 0
        self.changes = 0
        self._seen: dict[int, _Parts] = {}

    def step(self) -> bool:
        worked = self._dirty()
        worked = self._timers() or worked
        return self._backfill() or worked

    def next_due_ms(self) -> int | None:
        rows = self.store.rows("SELECT min(due_ms) FROM segment_timers")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    # the three kinds of work ----------------------------------------------------------------
    def _dirty(self) -> bool:
        if not self.store.rows("SELECT 1 FROM segments LIMIT 1"):
            # No segment to re-evaluate: the marks go in one statement, unread. A segment made
            # meanwhile is backfilled by this engine, in this thread, from persons as they are
            # then (under the pipeline's lag benchmark, reading and deleting them page by page
            # was a sixth of the pipeline thread's time). No write transaction when there are
            # none: on SQLite it would wait for the log writer's turn at every step. What the
            # engine saw of persons is forgotten too: a segment made later must not compare
            # against states from before these changes (forgetting only costs evaluations).
            self._seen.clear()
            if not self.store.rows("SELECT 1 FROM dirty_persons LIMIT 1"):
                return False
            with self.store.tx() as tx:
                return tx.run("DELETE FROM dirty_persons") > 0
        # All of them, sorted here: dirty_persons has no index on at_ms, and a sort per page
        # (ORDER BY at_ms LIMIT) scanned the whole backlog for every 500 persons.
        rows = sorted(
            self.store.rows("SELECT person_id, workspace_id, at_ms FROM dirty_persons"),
            key=lambda row: row[2],
        )
        deadline = time.monotonic() + STEP_S
        for start in range(0, len(rows), DIRTY_PAGE):
            self._dirty_page(rows[start : start + DIRTY_PAGE])
            if time.monotonic() > deadline:
                break
        return bool(rows)

    def _dirty_page(self, rows: list[Any]) -> None:
        by_workspace: dict[int, list[int]] = {}
        for pid, ws, _ in rows:
            by_workspace.setdefault(ws, []).append(pid)
        with self.store.tx() as tx:
            for ws, pids in by_workspace.items():
                self._dirty_workspace(tx, self.segments.list(ws), pids)
            # one DELETE per page on PostgreSQL, not one per person (the pipeline's lag row)
            self.store.clear_dirty(tx, [(pid, at) for pid, _, at in rows])

    def _dirty_workspace(self, tx: Tx, segments: list[Segment], pids: list[int]) -> None:
        if any(segment_names(s.condition) for s in segments):
            self._evaluate(tx, segments, pids, full=True)
            return
        # A backfill still to reach a person evaluates them then, with what is current then:
        # here only the segments whose backfill is done with them.
        done = [s for s in segments if s.backfill_state == "done"]
        if done:
            wanted = self._changed(done, pids)
            self._evaluate(tx, done, sorted(wanted), full=True, wanted=wanted)
        for s in segments:
            behind = [pid for pid in pids if pid <= s.backfill_after]
            if s.backfill_state == "running" and behind:
                self._evaluate(tx, [s], behind, full=True)

    def _changed(self, segments: list[Segment], pids: list[int]) -> dict[int, set[int]]:
        """For each person, the segments whose inputs changed since the engine last saw the
        person (traits, accounts, first and last seen, or the counters of an event name a segment
        counts: any new, late or merged event of that name changes its count or last time).
        Time passing needs no evaluation here: timers cover it. Segment references and
        persons never seen (or merged) are always evaluated."""
        names = set().union(*(event_names(s.condition) for s in segments))
        now: dict[int, _Parts | None] = {pid: None for pid in pids}
        for pid, traits, counts, first, last, merged in self.store.rows(
            "SELECT id, traits, event_counts, first_seen_ms, last_seen_ms, merged_into "
            f"FROM persons WHERE id IN ({','.join('?' * len(pids))})",
            pids,
        ):
            if merged is None:
                counted = decode_json(counts)
                now[pid] = _Parts(hash(_text(traits)), 0, first, last,
                                  {n: tuple(counted[n]) for n in names if n in counted})  # fmt: skip
        accounts: dict[int, list[Any]] = {}
        for pid, group_id, traits in self.store.rows(
            "SELECT m.person_id, a.group_id, a.traits FROM account_members m JOIN accounts a "
            "ON a.workspace_id = m.workspace_id AND a.group_id = m.group_id "
            f"WHERE m.person_id IN ({','.join('?' * len(pids))})",
            pids,
        ):
            accounts.setdefault(pid, []).append((group_id, _text(traits)))
        for pid, held in accounts.items():
            parts = now.get(pid)
            if parts is not None:
                now[pid] = dataclasses.replace(parts, accounts=hash(tuple(sorted(held))))
        reads = _Reads(segments)
        wanted: dict[int, set[int]] = {}
        for pid, parts in now.items():
            before = self._seen.pop(pid, None)
            chosen = reads.affected(before, parts)
            if chosen:
                wanted[pid] = chosen
            if parts is not None:
                self._seen[pid] = parts
        if len(self._seen) > SEEN_MAX:  # forgetting only costs evaluations
            self._seen.clear()
        return wanted

    def _timers(self) -> bool:
        now = now_ms()
        rows = self.store.rows(
            "SELECT t.segment_id, t.person_id, s.workspace_id FROM segment_timers t "
            "JOIN segments s ON s.id = t.segment_id WHERE t.due_ms <= ? ORDER BY t.due_ms LIMIT ?",
            (now, PAGE),
        )
        if not rows:
            return False
        by_segment: dict[tuple[int, int], list[int]] = {}
        for sid, pid, ws in rows:
            by_segment.setdefault((ws, sid), []).append(pid)
        with self.store.tx() as tx:
            for (ws, sid), pids in by_segment.items():
                segments = self.segments.list(ws)
                chosen = _with_dependents(segments, sid)
                self._evaluate(tx, chosen, pids, full=False, all_segments=segments)
        return True

    def _backfill(self) -> bool:
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM segments WHERE backfill_state IN ('pending', 'running') "
            "ORDER BY id LIMIT 1"
        )
        if not rows:
            return False
        segment = _segment(rows[0])
        ws = segment.workspace_id
        if segment.backfill_state == "pending":
            total = self.store.rows(
                "SELECT count(*) FROM persons WHERE workspace_id = ? AND merged_into IS NULL",
                (ws,),
            )[0][0]
            with self.store.tx() as tx:
                tx.run(
                    "UPDATE segments SET backfill_state = 'running', backfill_total = ?, "
                    "backfill_done = 0, backfill_after = 0 WHERE id = ? AND version = ?",
                    (total, segment.id, segment.version),
                )
            return True
        segments = self.segments.list(ws)
        chosen = _with_dependents(segments, segment.id)
        bulk = len(chosen) == 1 and _bulk(segment.condition)
        pids = [
            row[0]
            for row in self.store.rows(
                # by primary key (`+`: not through the partial index, which sorts every person)
                "SELECT id FROM persons WHERE id > ? AND workspace_id = ? AND +merged_into IS NULL "
                "ORDER BY id LIMIT ?",
                (segment.backfill_after, ws, BULK if bulk else PAGE),
            )
        ]
        # Members from before a redefinition who are no longer persons are dropped at the end.
        with self.store.tx() as tx:
            if pids and bulk:
                self._backfill_bulk(tx, segment, pids, segments)
            elif pids:
                self._evaluate(tx, chosen, pids, full=False, all_segments=segments)
            if pids:
                tx.run(
                    "UPDATE segments SET backfill_after = ?, backfill_done = backfill_done + ? "
                    "WHERE id = ? AND version = ?",
                    (pids[-1], len(pids), segment.id, segment.version),
                )
            else:
                tx.run(
                    "UPDATE segments SET backfill_state = 'done' WHERE id = ? AND version = ?",
                    (segment.id, segment.version),
                )
        return True

    def _backfill_bulk(
        self, tx: Tx, segment: Segment, pids: list[int], segments: list[Segment]
    ) -> None:
        """Backfill a page of persons (ids `after` to `pids[-1]`) with the compiled SQL: its
        answer is the evaluator's (the oracle tests hold both to one definition). Timers: the
        persons with events inside a rolling window are evaluated here one by one, as a dirty
        person would be; for the others only first and last seen can flip a test with time
        (`_bulk` leaves trait dates to the evaluator), read from their columns."""
        now = now_ms()
        first, last = segment.backfill_after + 1, pids[-1]
        search = Search(self.store.storage, segment.workspace_id, segment.condition, now=now,
                        per_person=True)  # fmt: skip
        matched = set(search.ids(first, last))
        busy = self._with_window_events(segment.condition, first, last, now) & set(pids)
        if busy:
            self._evaluate(tx, [segment], sorted(busy), full=False, all_segments=segments)
        span = "segment_id = ? AND person_id >= ? AND person_id <= ?"
        current = {row[0] for row in tx.all(
            f"SELECT person_id FROM segment_members WHERE {span}", (segment.id, first, last)
        ) if row[0] not in busy}  # fmt: skip
        changes = [(segment, pid, True) for pid in sorted(matched - busy - current)]
        changes += [(segment, pid, False) for pid in sorted(current - matched)]
        self._write_changes(tx, changes, now)
        dues = {pid: due for pid, due in self._profile_dues(segment.condition, first, last, now)
                if pid not in busy}  # fmt: skip
        stale = tx.all(f"SELECT person_id FROM segment_timers WHERE {span}",
                       (segment.id, first, last))  # fmt: skip
        tx.many(
            "DELETE FROM segment_timers WHERE segment_id = ? AND person_id = ?",
            [(segment.id, pid) for (pid,) in stale if pid not in busy and pid not in dues],
        )
        tx.many(
            "INSERT INTO segment_timers (segment_id, person_id, due_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (segment_id, person_id) DO UPDATE SET due_ms = excluded.due_ms",
            [(segment.id, pid, due) for pid, due in dues.items()],
        )

    def _profile_dues(
        self, cond: Condition, first: int, last: int, now: int
    ) -> list[tuple[int, int]]:
        """(person, when a first/last seen test of `cond` flips) where that is still to come:
        what the evaluator answers for a person without events in a rolling window."""
        tests = _profile_times(cond)
        if not tests:
            return []
        out = []
        for pid, first_seen, last_seen in self.store.rows(
            "SELECT id, first_seen_ms, last_seen_ms FROM persons WHERE id >= ? AND id <= ? "
            "AND +merged_into IS NULL",
            (first, last),
        ):
            person = PersonData({}, first_seen or None, last_seen or None)
            due = evaluate(AnyOf(tuple(tests)), person, now)[1]
            if due is not None:
                out.append((pid, due))
        return out

    def _with_window_events(self, cond: Condition, first: int, last: int, now: int) -> set[int]:
        """Persons (ids `first` to `last`) with an event that a rolling window of `cond` holds."""
        rolling = [d for d in _dids(cond) if d.window.last is not None]
        if not rolling:
            return set()
        names = sorted({d.event for d in rolling})
        since = min(d.window.bounds(now)[0] or 0 for d in rolling)
        rows = self.store.rows(
            "SELECT DISTINCT person_id FROM person_events WHERE person_id >= ? AND person_id <= ? "
            f"AND event IN ({','.join('?' * len(names))}) AND timestamp_ms >= ?",
            (first, last, *names, since),
        )
        return {row[0] for row in rows}

    # evaluation -------------------------------------------------------------------------------
    def _evaluate(
        self,
        tx: Tx,
        segments: list[Segment],
        pids: list[int],
        *,
        full: bool,
        all_segments: list[Segment] | None = None,
        wanted: dict[int, set[int]] | None = None,
    ) -> None:
        """Re-evaluate `segments` for `pids` (with `wanted`, only the segment ids it lists for
        each person) and write what changed. With `full`, segments that refer to others are
        evaluated after them (in order of their references)."""
        if not pids:
            return
        now = now_ms()
        ordered = _by_references(segments)
        events_of: dict[str, set[int]] | None = None
        if wanted is not None:
            events_of = {}
            for s in ordered:
                for name in event_names(s.condition):
                    events_of.setdefault(name, set()).update(
                        pid for pid in pids if s.id in wanted.get(pid, ())
                    )
        people = load_people(self.store, pids, [s.condition for s in ordered], now, events_of)
        names = {s.id: s.name for s in all_segments or segments}
        marks = ",".join("?" * len(pids))
        current: dict[tuple[int, int], int] = {
            (sid, pid): entered
            for sid, pid, entered in tx.all(
                f"SELECT segment_id, person_id, entered_ms FROM segment_members "
                f"WHERE person_id IN ({marks})",
                pids,
            )
        }
        held: dict[int, set[str]] = {}
        for sid, pid in current:
            if sid in names:
                held.setdefault(pid, set()).add(names[sid])
        for pid, data in people.items():
            if data is not None:
                data.segments = held.get(pid, set())
        chosen = {s.id for s in ordered}
        # By the primary key (segment, person): segment_timers has no index by person alone, and
        # `person_id IN` scanned every timer of every segment for each page. Changed persons
        # skip the read: their timers are only ever brought earlier (below), never dropped; a
        # timer earlier than needed fires, and its evaluation sets the right one or drops it.
        timers = {} if wanted is not None else {
            (sid, pid): due
            for sid, pid, due in tx.all(
                f"SELECT segment_id, person_id, due_ms FROM segment_timers "
                f"WHERE segment_id IN ({','.join('?' * len(chosen))}) AND person_id IN ({marks})",
                [*chosen, *pids],
            )
        }  # fmt: skip
        set_timers: list[tuple[int, int, int]] = []
        earlier: list[tuple[int, int, int]] = []  # set, or moved earlier only
        drop_timers: list[tuple[int, int]] = []
        changes: list[tuple[Segment, int, bool]] = []
        for segment in ordered:
            for pid in pids:
                if wanted is not None and segment.id not in wanted.get(pid, ()):
                    continue
                data = people[pid]
                member, due = (
                    (False, None) if data is None else evaluate(segment.condition, data, now)
                )
                self.evaluations += 1
                was = (segment.id, pid) in current
                if member != was:
                    changes.append((segment, pid, member))
                    if data is not None:
                        (data.segments.add if member else data.segments.discard)(segment.name)
                old = timers.get((segment.id, pid))
                if due is None and old is not None:
                    drop_timers.append((segment.id, pid))
                elif due is not None and wanted is not None:
                    earlier.append((segment.id, pid, due))
                elif due is not None and (old is None or due < old or old <= now):
                    # A timer earlier than needed only costs an evaluation when it fires (which
                    # sets the right one), so one that moves later is left as it is: every
                    # event moves "last seen within 7 days" a little later.
                    set_timers.append((segment.id, pid, due))
        self._write_changes(tx, changes, now)
        tx.many(
            "INSERT INTO segment_timers (segment_id, person_id, due_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (segment_id, person_id) DO UPDATE SET due_ms = excluded.due_ms",
            set_timers,
        )
        tx.many(
            "INSERT INTO segment_timers (segment_id, person_id, due_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (segment_id, person_id) DO UPDATE SET due_ms = excluded.due_ms "
            "WHERE excluded.due_ms < segment_timers.due_ms",
            earlier,
        )
        tx.many("DELETE FROM segment_timers WHERE segment_id = ? AND person_id = ?", drop_timers)

    def _write_changes(self, tx: Tx, changes: list[tuple[Segment, int, bool]], now: int) -> None:
        """Entering and leaving: the membership rows, the timeline entries and the signals."""
        self.changes += len(changes)
        tx.many(
            "INSERT INTO segment_members (segment_id, person_id, entered_ms) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(segment.id, pid, now) for segment, pid, member in changes if member],
        )
        tx.many(
            "DELETE FROM segment_members WHERE segment_id = ? AND person_id = ?",
            [(segment.id, pid) for segment, pid, member in changes if not member],
        )
        rows = []
        for segment, pid, member in changes:
            kind = "entered_segment" if member else "left_segment"
            data = self.store.json({"segment_id": segment.id, "name": segment.name})
            rows.append((segment.workspace_id, pid, now, kind, data, segment.id))
        tx.many(
            "INSERT INTO person_history (workspace_id, person_id, identifier_id, seq, at_ms, kind, "
            "data) VALUES (?, ?, NULL, NULL, ?, ?, {j})",
            [row[:5] for row in rows],
        )
        tx.many(
            "INSERT INTO signals (workspace_id, kind, segment_id, person_id, at_ms, data) "
            "VALUES (?, ?, ?, ?, ?, {j})",
            [(ws, kind, sid, pid, at, data) for ws, pid, at, kind, data, sid in rows],
        )


@dataclass(frozen=True)
class _Parts:
    """What the engine last saw of a person, to tell which segments a change can affect."""

    traits: int  # hash of the traits' JSON
    accounts: int  # hash of the person's accounts' traits
    first_seen_ms: int | None
    last_seen_ms: int | None
    counts: dict[str, tuple[int, ...]]  # event name -> [count, first, last] from event_counts


def _text(value: Any) -> Any:
    return value if isinstance(value, str | bytes) else msgspec.json.encode(value)


class _Reads:
    """Which segments read what: an index from each input to the segments a change of it can
    affect."""

    def __init__(self, segments: list[Segment]) -> None:
        self.all = {s.id for s in segments}
        self.always: set[int] = set()
        self.traits: set[int] = set()
        self.first_seen: set[int] = set()
        self.last_seen: set[int] = set()
        self.accounts: set[int] = set()
        self.names: dict[str, set[int]] = {}
        for s in segments:
            self._add(s.id, s.condition)

    def _add(self, sid: int, cond: Condition) -> None:
        if isinstance(cond, All | AnyOf):
            for item in cond.items:
                self._add(sid, item)
        elif isinstance(cond, Not):
            self._add(sid, cond.item)
        elif isinstance(cond, Did):
            self.names.setdefault(cond.event, set()).add(sid)
        elif isinstance(cond, Predicate) and cond.scope == "trait":
            self.traits.add(sid)
        elif isinstance(cond, Predicate) and cond.scope == "profile":
            (self.first_seen if cond.path[0] == "first_seen" else self.last_seen).add(sid)
        elif isinstance(cond, Predicate):
            self.accounts.add(sid)
        else:  # segment references
            self.always.add(sid)

    def affected(self, before: _Parts | None, now: _Parts | None) -> set[int]:
        if before is None or now is None:
            return self.all
        chosen = set(self.always)
        if before.traits != now.traits:
            chosen |= self.traits
        if before.accounts != now.accounts:
            chosen |= self.accounts
        if before.first_seen_ms != now.first_seen_ms:
            chosen |= self.first_seen
        if before.last_seen_ms != now.last_seen_ms:
            chosen |= self.last_seen
        for name, sids in self.names.items():
            if before.counts.get(name) != now.counts.get(name):
                chosen |= sids
        return chosen


_RELATIVE = ("within_last", "more_than_ago")


def _bulk(cond: Condition) -> bool:
    """No relative-time test on a trait (outside event filters): time alone changes the answer
    only through rolling windows of event counts and first and last seen."""
    if isinstance(cond, All | AnyOf):
        return all(_bulk(c) for c in cond.items)
    if isinstance(cond, Not):
        return _bulk(cond.item)
    if isinstance(cond, Predicate):
        return cond.scope == "profile" or cond.op not in _RELATIVE
    return True


def _profile_times(cond: Condition) -> list[Condition]:
    """The relative-time tests on first and last seen in `cond`."""
    if isinstance(cond, All | AnyOf):
        return [t for c in cond.items for t in _profile_times(c)]
    if isinstance(cond, Not):
        return _profile_times(cond.item)
    if isinstance(cond, Predicate) and cond.scope == "profile" and cond.op in _RELATIVE:
        return [cond]
    return []


def _with_dependents(segments: list[Segment], segment_id: int) -> list[Segment]:
    """The segment and every segment that refers to it, directly or not."""
    chosen = {s.name for s in segments if s.id == segment_id}
    grew = True
    while grew:
        grew = False
        for s in segments:
            if s.name not in chosen and segment_names(s.condition) & chosen:
                chosen.add(s.name)
                grew = True
    return [s for s in segments if s.name in chosen]


def _by_references(segments: list[Segment]) -> list[Segment]:
    """Segments ordered so that every segment comes after those it refers to."""
    by_name = {s.name: s for s in segments}
    done: list[Segment] = []
    seen: set[str] = set()

    def visit(segment: Segment, depth: int) -> None:
        if segment.name in seen or depth > 32:
            return
        seen.add(segment.name)
        for ref in sorted(segment_names(segment.condition)):
            if ref in by_name:
                visit(by_name[ref], depth + 1)
        done.append(segment)

    for segment in segments:
        visit(segment, 0)
    return done
