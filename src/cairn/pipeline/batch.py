"""The unit of work of one pipeline batch: state loaded once, changed in memory, written at once.

A batch reads the identifiers and persons its events touch in a few queries, lets the stages work on
them in memory, and writes every change plus the cursor's new position in one transaction. The
cursor's version check makes that transaction fail (`StaleBatch`) if anything else changed derived
state meanwhile: the runner then redoes the batch from fresh state. Person and identifier ids are
allocated here, above the largest stored ones, under the same check.

A batch's writes are built on the stages' thread (`writes`) and may run on another (`Writes.run`)
while the next batch is worked out. That next batch then reads through the first one's `Unsettled`
state (what it wrote, as rows) before the database, whose reads may not show those writes yet.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cairn.identity.rules import IdentityRules
from cairn.ingest.timestamps import now_ms
from cairn.pipeline.cache import StateCache
from cairn.pipeline.event import Event
from cairn.profiles.state import Profile
from cairn.storage.people import (
    MARK_DIRTY,
    MARK_DIRTY_TYPES,
    PIPELINE_CURSOR,
    CursorRow,
    PeopleStore,
    Tx,
    decode_json,
)

if TYPE_CHECKING:
    from cairn.plans.store import Checker, PlanStore

__all__ = [
    "UPSERT_PERSON",
    "AccountRow",
    "Batch",
    "Identifier",
    "Merge",
    "PersonRow",
    "Unsettled",
    "Writes",
    "person_from_row",
    "person_params",
    "write_dead_letters",
]

USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"
EMAIL = "email"


@dataclass(slots=True)
class Identifier:
    id: int
    workspace_id: int
    kind: str
    value: str
    person_id: int
    via_id: int | None
    seq: int = 0
    new: bool = False
    cached: bool = False  # as the state cache holds it


@dataclass(slots=True)
class PersonRow:
    id: int
    workspace_id: int
    profile: Profile
    merged_into: int | None = None
    user_ids: int = 0
    identifiers: int = 0
    identifiers_refused: int = 0
    blocked: int = 0
    created_ms: int = 0
    dirty: bool = False
    new: bool = False  # made by this batch: not stored yet
    # traits and trait_ts as stored, not decoded yet (None once decoded, or for a new person):
    # most events never read or change them, and the batch then writes neither back
    stored_traits: tuple[Any, Any] | None = None
    row: tuple[Any, ...] | None = None  # as stored, when loaded (for the state cache)

    def load_traits(self) -> Profile:
        """The profile with its traits, for a change to them (identify, merge)."""
        if self.stored_traits is not None:
            traits, trait_ts = self.stored_traits
            self.profile.traits, self.profile.trait_ts = decode_json(traits), decode_json(trait_ts)
            self.stored_traits = None
        return self.profile


@dataclass(slots=True)
class AccountRow:
    workspace_id: int
    group_id: str
    profile: Profile
    created_ms: int
    dirty: bool = False


@dataclass(slots=True)
class Merge:
    id: str
    workspace_id: int
    survivor_id: int
    merged_id: int
    reason: str
    message_id: str | None
    seq: int | None
    at_ms: int
    new_identifier_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Stats:
    events: int = 0
    skipped: int = 0
    unattributed: int = 0
    persons_created: int = 0
    merges: int = 0
    merges_refused: int = 0
    identifiers_refused: int = 0
    blocked: int = 0


IdentifierKey = tuple[int, str, str]  # workspace, kind, value


@dataclass(slots=True)
class Unsettled:
    """What a batch wrote, as rows, while its transaction may still be running: the next batch
    reads here before it asks the database. Everything the pipeline reads back and a batch can
    change is here: the persons it changed (merged ones too), its identifiers as they now are,
    its accounts and memberships, the merges (which also move stored rows it never loaded), the
    ids it allocated and the cursor its commit leaves."""

    cursor: CursorRow
    next_person: int
    next_identifier: int
    persons: dict[int, tuple[Any, ...]]
    identifiers: dict[IdentifierKey, tuple[int, int, int | None]]
    moved: dict[int, int]  # merged person: the person it was merged into
    accounts: dict[tuple[int, str], tuple[Any, ...]]
    members: set[tuple[int, str, int]]

    def root(self, person_id: int) -> int:
        """Where a person read from the database is after this batch's merges."""
        while (into := self.moved.get(person_id)) is not None:
            person_id = into
        return person_id


def person_from_row(row: Any, *, lazy: bool = False) -> PersonRow:
    """A stored person; `lazy`: traits left undecoded until `load_traits`."""
    (pid, ws, merged_into, traits, trait_ts, counts, first, last, events, revenue, user_ids,
     identifiers, refused, created, _updated) = row  # fmt: skip
    # last_seen_ms is stored as 0 when unknown, so listings sort by it on an index.
    profile = Profile(
        {} if lazy else decode_json(traits), {} if lazy else decode_json(trait_ts),
        decode_json(counts), first, last or None, events, revenue,
    )  # fmt: skip
    person = PersonRow(pid, ws, profile, merged_into, user_ids, identifiers, refused, created)
    if lazy:
        person.stored_traits = (traits, trait_ts)
    person.row = tuple(row)
    return person


def account_from_row(row: Any) -> AccountRow:
    ws, group_id, traits, trait_ts, counts, first, last, events, created, _updated = row
    profile = Profile(
        decode_json(traits), decode_json(trait_ts), decode_json(counts), first, last or None, events
    )
    return AccountRow(ws, group_id, profile, created)


class Batch:
    def __init__(
        self,
        store: PeopleStore,
        rules: IdentityRules,
        cursor: CursorRow,
        events: list[Event],
        requires_hash: Callable[[str], bool] = lambda _source_id: False,
        plans: PlanStore | None = None,
        cache: StateCache | None = None,
        unsettled: Unsettled | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.unsettled = unsettled
        # the persons as the batch wrote them (rows of PERSON_COLUMNS), for the state cache
        self.written: list[tuple[Any, ...]] = []
        self.plans = plans
        self.violations: list[tuple[Any, ...]] = []
        self.quarantine: list[tuple[Any, ...]] = []
        self.released: list[int] = []  # quarantined events that now pass (a replay)
        self.source_requires_hash = requires_hash
        self.rules = rules
        self.cursor = cursor
        self.events = events
        self.now = now_ms()
        self.stats = Stats()
        self._ids: dict[tuple[int, str, str], Identifier] = {}
        self._absent: set[tuple[int, str, str]] = set()
        self._absent_accounts: set[tuple[int, str]] = set()
        self._by_person: dict[int, list[Identifier]] = {}
        self.persons: dict[int, PersonRow] = {}
        self.accounts: dict[tuple[int, str], AccountRow] = {}
        self._new_by_person: dict[int, list[int]] = {}
        self.merges: list[Merge] = []
        # rows keep their Identifier: its person is read when the batch is written, after merges
        self.person_events: list[tuple[int, int, Identifier, str, str | None, int]] = []
        self.history: list[
            tuple[int, int | None, Identifier | None, int | None, int, str, Any]
        ] = []
        self._merged_into: dict[int, set[int]] = {}  # person id: the loaded persons merged into it
        self.members: dict[tuple[int, str, int], int] = {}
        self.account_events: list[tuple[int, str, int, int]] = []
        self.dead_letters: list[tuple[int, int, str, str]] = []
        self._blocked: dict[tuple[int, int], bool] = {}
        self._any_blocks: bool | None = None
        self._joins: list[tuple[int, str, int, int]] = []  # ws, group, person, history index
        self.applied: set[int] = set()
        self._checkers: dict[tuple[int, str], Checker] = {}
        self.next_person, self.next_identifier = (n + 1 for n in store.max_ids())
        if unsettled is not None:
            self.next_person = max(self.next_person, unsettled.next_person)
            self.next_identifier = max(self.next_identifier, unsettled.next_identifier)

    # loading ----------------------------------------------------------------------------------
    def preload(self, wanted: dict[tuple[int, str], set[str]], groups: dict[int, set[str]]) -> None:
        """Load the identifiers and accounts named by the batch's events, and their persons."""
        person_ids: set[int] = set()
        for (ws, kind), values in wanted.items():
            values = {v for v in values if (ws, kind, v) not in self._ids}
            if self.cache is not None:
                found = self.cache.identifier
                values = self._take_identifiers(ws, kind, values, person_ids, found, True)
            if self.unsettled is not None:
                written = self.unsettled.identifiers.get
                values = self._take_identifiers(ws, kind, values, person_ids, written, False)
            for iid, _kind, value, pid, via in self.store.identifiers(ws, kind, values):
                pid = self._moved(pid)
                self._remember(Identifier(iid, ws, kind, value, pid, via))
                person_ids.add(pid)
            # known to be unlinked: later lookups in this batch need not ask the database
            self._absent.update((ws, kind, v) for v in values if (ws, kind, v) not in self._ids)
        self._load_persons(person_ids)
        for ws, group_ids in groups.items():
            if self.unsettled is not None:
                for group_id in group_ids:
                    if (row := self.unsettled.accounts.get((ws, group_id))) is not None:
                        self.accounts[(ws, group_id)] = account_from_row(row)
                group_ids = {g for g in group_ids if (ws, g) not in self.accounts}
            for row in self.store.accounts(ws, group_ids):
                account = account_from_row(row)
                self.accounts[(ws, account.group_id)] = account
            self._absent_accounts.update((ws, g) for g in group_ids if (ws, g) not in self.accounts)
        if self.events and self.events[0].seq <= self.cursor.high_water:
            self.applied = self.store.applied(self.events[0].seq, self.events[-1].seq)

    def _take_identifiers(
        self,
        ws: int,
        kind: str,
        values: set[str],
        person_ids: set[int],
        lookup: Callable[[IdentifierKey], tuple[int, int, int | None] | None],
        cached: bool,
    ) -> set[str]:
        """Take what `lookup` (the state cache, or the unsettled batch) holds of `values`;
        return the rest. `cached`: the identifiers are as the state cache holds them."""
        rest: set[str] = set()
        for value in values:
            found = lookup((ws, kind, value))
            if found is None:
                rest.add(value)
                continue
            iid, pid, via = found
            self._remember(Identifier(iid, ws, kind, value, pid, via, cached=cached))
            person_ids.add(pid)
        return rest

    def _moved(self, person_id: int) -> int:
        """A person id read from the database, after the unsettled batch's merges."""
        return person_id if self.unsettled is None else self.unsettled.root(person_id)

    def _load_persons(self, ids: set[int]) -> None:
        missing = [pid for pid in ids if pid not in self.persons]
        if self.cache is not None:
            rest = []
            for pid in missing:
                row = self.cache.person(pid)
                if row is None:
                    rest.append(pid)
                else:
                    person = self.persons[pid] = person_from_row(row, lazy=True)
                    person.row = None  # the cache has it: kept again only if written
            missing = rest
        rows: list[Any] = []
        if self.unsettled is not None:
            written = self.unsettled.persons
            rows = [written[pid] for pid in missing if pid in written]
            missing = [pid for pid in missing if pid not in written]
        for row in rows + self.store.persons(missing):
            person = person_from_row(row, lazy=True)
            if person.merged_into is not None:
                person.merged_into = self._moved(person.merged_into)
            self.persons[person.id] = person
            if person.merged_into is not None:
                self._merged_into.setdefault(person.merged_into, set()).add(person.id)

    def _remember(self, ident: Identifier) -> None:
        self._ids[(ident.workspace_id, ident.kind, ident.value)] = ident
        self._by_person.setdefault(ident.person_id, []).append(ident)

    def checker(self, ws: int, source_id: str) -> Checker | None:
        """The source's tracking-plan checker (None: no plans), asked for once per batch."""
        if self.plans is None:
            return None
        found = self._checkers.get((ws, source_id))
        if found is None:
            found = self._checkers[(ws, source_id)] = self.plans.checker(ws, source_id)
        return found

    # identity operations used by the identity stage ------------------------------------------
    def identifier(self, ws: int, kind: str, value: str) -> Identifier | None:
        key = (ws, kind, value)
        ident = self._ids.get(key)
        if ident is None and self.cache is not None and key not in self._absent:
            found = self.cache.identifier(key)
            if found is not None:
                ident = Identifier(found[0], ws, kind, value, found[1], found[2], cached=True)
                self._remember(ident)
                self._load_persons({ident.person_id})
                return ident
        written = (
            self.unsettled.identifiers.get(key)
            if ident is None and self.unsettled is not None and key not in self._absent
            else None
        )
        if written is not None:
            ident = Identifier(written[0], ws, kind, value, written[1], written[2])
            self._remember(ident)
            self._load_persons({ident.person_id})
            return ident
        if ident is None and key not in self._absent:
            rows = self.store.identifiers(ws, kind, [value])
            if rows:
                iid, _kind, _value, pid, via = rows[0]
                pid = self._moved(pid)
                ident = Identifier(iid, ws, kind, value, pid, via)
                self._remember(ident)
                self._load_persons({pid})
            else:
                self._absent.add(key)
        return ident

    def person(self, person_id: int) -> PersonRow:
        person = self.persons.get(person_id)
        if person is None:
            self._load_persons({person_id})
            person = self.persons[person_id]
        return person

    def new_person(self, ev: Event) -> PersonRow:
        person = PersonRow(self.next_person, ev.workspace_id, Profile(), created_ms=self.now)
        person.dirty = person.new = True
        self.next_person += 1
        self.persons[person.id] = person
        self.stats.persons_created += 1
        return person

    def link(
        self, ev: Event, kind: str, value: str, person: PersonRow, via: Identifier | None
    ) -> Identifier | None:
        """Link a new identifier to a person, unless the person is at the identifier limit."""
        if person.identifiers >= self.rules.max_identifiers:
            person.identifiers_refused += 1
            person.dirty = True
            self.stats.identifiers_refused += 1
            return None
        ident = Identifier(
            self.next_identifier, ev.workspace_id, kind, value, person.id,
            via.id if via is not None else None, ev.seq, new=True,
        )  # fmt: skip
        self.next_identifier += 1
        self._remember(ident)
        self._new_by_person.setdefault(person.id, []).append(ident.id)
        person.identifiers += 1
        if kind == USER_ID:
            person.user_ids += 1
        person.dirty = True
        return ident

    def blocked(self, a: int, b: int) -> bool:
        if self._any_blocks is None:  # only unmerges make blocks: most databases have none
            self._any_blocks = self.store.any_blocks()
        if not self._any_blocks:
            return False
        key = (min(a, b), max(a, b))
        if key not in self._blocked:
            self._blocked[key] = self.store.blocked(a, b)
        return self._blocked[key]

    def merge(self, ev: Event, survivor: PersonRow, merged: PersonRow, reason: str) -> bool:
        """Fold `merged` into `survivor`; False (and counted) when the identifier limit forbids."""
        if survivor.identifiers + merged.identifiers > self.rules.max_identifiers:
            survivor.identifiers_refused += merged.identifiers
            survivor.dirty = True
            self.stats.merges_refused += 1
            return False
        merge = Merge(
            "mrg_" + secrets.token_hex(8), ev.workspace_id, survivor.id, merged.id, reason,
            ev.message_id, ev.seq, ev.timestamp_ms,
            self._new_by_person.pop(merged.id, []),
        )  # fmt: skip
        self._new_by_person.setdefault(survivor.id, []).extend(merge.new_identifier_ids)
        self.merges.append(merge)
        self.stats.merges += 1
        survivor.load_traits().combine(merged.load_traits())
        survivor.user_ids += merged.user_ids
        survivor.identifiers += merged.identifiers
        survivor.identifiers_refused += merged.identifiers_refused
        survivor.dirty = True
        merged.merged_into = survivor.id
        merged.dirty = True
        into_survivor = self._merged_into.setdefault(survivor.id, set())
        into_survivor.add(merged.id)
        for pid in self._merged_into.pop(merged.id, ()):
            self.persons[pid].merged_into = survivor.id
            self.persons[pid].dirty = True
            into_survivor.add(pid)
        moved = self._by_person.pop(merged.id, [])
        for ident in moved:
            ident.person_id = survivor.id
            ident.cached = False
        self._by_person.setdefault(survivor.id, []).extend(moved)
        for key in [k for k in self.members if k[2] == merged.id]:
            joined = self.members.pop(key)
            target = (key[0], key[1], survivor.id)
            self.members[target] = min(joined, self.members.get(target, joined))
        detail = {"merge_id": merge.id, "reason": reason, "message_id": ev.message_id}
        self.record(ev, survivor.id, None, "merged", {**detail, "person_id": merged.id})
        self.record(ev, merged.id, None, "merged_into", {**detail, "person_id": survivor.id})
        return True

    # rows the stages add ------------------------------------------------------------------------
    def record(
        self, ev: Event, person_id: int | None, ident: Identifier | None, kind: str, data: Any
    ) -> None:
        """A history entry: on `ident`'s person (moves with it) or, for identity entries, fixed."""
        self.history.append(
            (ev.workspace_id, person_id, ident, ev.seq, ev.timestamp_ms, kind, data)
        )

    def attribute(self, ev: Event, ident: Identifier) -> None:
        self.person_events.append(
            (ev.seq, ev.workspace_id, ident, ev.type, ev.event, ev.timestamp_ms)
        )

    def account(self, ws: int, group_id: str) -> AccountRow:
        key = (ws, group_id)
        account = self.accounts.get(key)
        if account is None:
            row = self.unsettled.accounts.get(key) if self.unsettled is not None else None
            if row is None and key not in self._absent_accounts:
                row = self.store.account(ws, group_id)
            if row is not None:
                account = account_from_row(row)
            else:
                account = AccountRow(ws, group_id, Profile(), self.now)
            self.accounts[key] = account
        return account

    def join(self, ev: Event, group_id: str, person: PersonRow, ident: Identifier) -> None:
        """Membership of `person` in an account, joined at the earliest group call."""
        key = (ev.workspace_id, group_id, person.id)
        if key in self.members:
            self.members[key] = min(self.members[key], ev.timestamp_ms)
            return
        self.members[key] = ev.timestamp_ms
        # recorded now, in order; dropped when the batch is written if the person (as of this
        # event) was a member already: one query for the whole batch
        self._joins.append((ev.workspace_id, group_id, person.id, len(self.history)))
        self.record(ev, None, ident, "joined_account", {"group_id": group_id})

    def _drop_known_joins(self) -> None:
        """Drop the joined_account entries of persons that were members before this batch."""
        if not self._joins:
            return
        stored = self.store.memberships({pid for _ws, _group, pid, _at in self._joins})
        if self.unsettled is not None:
            stored = {(ws, g, self._moved(pid)) for ws, g, pid in stored}
            stored |= self.unsettled.members
        known = {at for ws, group, pid, at in self._joins if (ws, group, pid) in stored}
        if known:
            self.history = [entry for at, entry in enumerate(self.history) if at not in known]
        self._joins = []

    def root(self, person_id: int) -> int:
        person = self.persons.get(person_id)
        while person is not None and person.merged_into is not None:
            person_id = person.merged_into
            person = self.persons.get(person_id)
        return person_id

    def keep_in(self, cache: StateCache, version: int) -> None:
        """After the batch committed (the cursor now at `version`): what it read and wrote."""
        written = {row[0]: row for row in self.written}
        persons: list[tuple[Any, ...]] = []
        merged: list[int] = []
        for p in self.persons.values():
            if p.merged_into is not None:
                merged.append(p.id)
            elif (row := written.get(p.id, p.row)) is not None:
                persons.append(row)
        cache.keep(
            version,
            [((i.workspace_id, i.kind, i.value), (i.id, i.person_id, i.via_id))
             for i in self._ids.values() if not i.cached],
            persons,
            merged,
        )  # fmt: skip

    # writing --------------------------------------------------------------------------------
    def flush(self, position: int, name: str = PIPELINE_CURSOR) -> None:
        self.writes(position, name).run(self.store)

    def writes(self, position: int, name: str = PIPELINE_CURSOR) -> Writes:
        """Every row the batch writes, with the cursor at `position`, built now (on the stages'
        thread: the rows read the batch's objects, which the next batch does not share)."""
        store = self.store
        self._drop_known_joins()
        high = max((e.seq for e in self.events), default=0)
        dirty = [p for p in self.persons.values() if p.dirty]
        created = [person_params(store, p, self.now) for p in dirty if p.new]
        changed = [
            person_params(store, p, self.now)
            for p in dirty
            if p.stored_traits is None and not p.new
        ]
        counted = [p for p in dirty if p.stored_traits is not None]
        counters = [_counter_params(store, p, self.now) for p in counted]
        self.written = created + changed
        self.written += [_stored_row(p, c) for p, c in zip(counted, counters, strict=True)]
        accounts = [_account_params(store, a, self.now) for a in self.accounts.values() if a.dirty]
        members = _member_rows(self)
        c = self.cursor
        unsettled = Unsettled(
            CursorRow(position, c.version + 1, c.holder, c.lease_until_ms,
                      max(c.high_water, high), self.now),
            self.next_person,
            self.next_identifier,
            {row[0]: row for row in self.written},
            {(i.workspace_id, i.kind, i.value): (i.id, i.person_id, i.via_id)
             for i in self._ids.values()},
            {m.merged_id: m.survivor_id for m in self.merges},
            {(row[0], row[1]): row for row in accounts},
            {(ws, g, pid) for ws, g, pid, _joined in members},
        )  # fmt: skip
        return Writes(
            name=name,
            version=c.version,
            position=position,
            high_water=high,
            merges=list(self.merges),
            identifiers=[
                (i.id, i.workspace_id, i.kind, i.value, i.person_id, i.via_id, i.seq, self.now)
                for i in self._ids.values()
                if i.new
            ],
            created=created,
            changed=changed,
            counters=counters,
            person_events=[
                (seq, ws, i.person_id, i.id, kind, name_, ts)
                for seq, ws, i, kind, name_, ts in self.person_events
            ],
            history=[
                (ws, pid, None, seq, at, kind, store.json(data))
                if i is None
                else (ws, i.person_id, i.id, seq, at, kind, store.json(data))
                for ws, pid, i, seq, at, kind, data in self.history
            ],
            accounts=accounts,
            members=members,
            account_events=self.account_events,
            dead_letters=self.dead_letters,
            violations=self.violations,
            quarantine=[(*q[:4], store.json(q[4]), q[5]) for q in self.quarantine],
            released=[(self.now, seq) for seq in self.released],
            dirty=[(p.id, p.workspace_id, self.now) for p in dirty],
            now=self.now,
            unsettled=unsettled,
        )


@dataclass(slots=True, kw_only=True)
class Writes:
    """A batch's writes as rows, and the cursor move they commit with: `run` needs no more of
    the batch (it may run on another thread while the next batch is worked out)."""

    name: str
    version: int  # the cursor's version the batch read: the commit fails if it changed
    position: int
    high_water: int
    merges: list[Merge]
    identifiers: list[tuple[Any, ...]]
    created: list[tuple[Any, ...]]
    changed: list[tuple[Any, ...]]
    counters: list[tuple[Any, ...]]
    person_events: list[tuple[Any, ...]]
    history: list[tuple[Any, ...]]
    accounts: list[tuple[Any, ...]]
    members: list[tuple[int, str, int, int]]
    account_events: list[tuple[int, str, int, int]]
    dead_letters: list[tuple[int, int, str, str]]
    violations: list[tuple[Any, ...]]
    quarantine: list[tuple[Any, ...]]
    released: list[tuple[int, int]]
    dirty: list[tuple[int, int, int]]
    now: int
    unsettled: Unsettled  # the state these writes leave, for the next batch

    def run(self, store: PeopleStore) -> None:
        """One transaction; `StaleBatch` if the cursor moved since the batch read it."""
        with store.batch_tx() as tx:
            store.advance(
                tx, self.name, version=self.version, position=self.position,
                high_water=self.high_water,
            )  # fmt: skip
            _write_merges(store, tx, self.merges, self.unsettled.root)
            tx.copy(
                "INSERT INTO identifiers (id, workspace_id, kind, value, person_id, via_id, seq, "
                "linked_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                self.identifiers,
            )
            tx.copy(UPSERT_PERSON, self.created)
            tx.upsert(UPSERT_PERSON, PERSON_TYPES, self.changed)
            tx.update("persons", _COUNTERS, self.counters)
            tx.copy(
                "INSERT INTO person_events (seq, workspace_id, person_id, identifier_id, type, "
                "event, timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING",
                self.person_events,
            )
            tx.copy(
                "INSERT INTO person_history (workspace_id, person_id, identifier_id, seq, at_ms, "
                "kind, data) VALUES (?, ?, ?, ?, ?, ?, {j})",
                self.history,
            )
            tx.insert(_UPSERT_ACCOUNT, self.accounts)
            tx.insert(
                "INSERT INTO account_members (workspace_id, group_id, person_id, joined_ms) "
                f"VALUES (?, ?, ?, ?) {_KEEP_EARLIEST_JOIN}",
                self.members,
            )
            tx.insert(
                "INSERT INTO account_events (workspace_id, group_id, seq, timestamp_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                self.account_events,
            )
            write_dead_letters(tx, self.dead_letters, self.now)
            tx.many(
                "INSERT INTO event_violations (seq, workspace_id, source_id, event, rule, path, "
                "severity, message, plan_version, action, at_ms) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq, rule, path) DO UPDATE SET "
                "severity = excluded.severity, message = excluded.message, "
                "plan_version = excluded.plan_version, action = excluded.action",
                self.violations,
            )
            tx.many(
                "INSERT INTO quarantine (seq, workspace_id, source_id, plan_version, violations, "
                "at_ms) VALUES (?, ?, ?, ?, {j}, ?) ON CONFLICT (seq) DO UPDATE SET "
                "plan_version = excluded.plan_version, violations = excluded.violations, "
                "released_ms = NULL",
                self.quarantine,
            )
            tx.many(
                "UPDATE quarantine SET released_ms = ? WHERE seq = ? AND released_ms IS NULL",
                self.released,
            )
            # for the segment engine (and later consumers of person changes)
            tx.upsert(MARK_DIRTY, MARK_DIRTY_TYPES, self.dirty)


# A membership written twice keeps the earliest join.
_KEEP_EARLIEST_JOIN = (
    "ON CONFLICT (workspace_id, group_id, person_id) DO UPDATE SET joined_ms = CASE WHEN "
    "excluded.joined_ms < account_members.joined_ms THEN excluded.joined_ms "
    "ELSE account_members.joined_ms END"
)


def _member_rows(batch: Batch) -> list[tuple[int, str, int, int]]:
    rows: dict[tuple[int, str, int], int] = {}
    for (ws, group_id, pid), joined in batch.members.items():
        key = (ws, group_id, batch.root(pid))
        rows[key] = min(joined, rows.get(key, joined))
    return [(*key, joined) for key, joined in rows.items()]


def write_dead_letters(tx: Tx, letters: list[tuple[int, int, str, str]], now: int) -> None:
    tx.many(
        "INSERT INTO dead_letters (workspace_id, seq, stage, error, at_ms) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (seq) DO UPDATE SET stage = excluded.stage, error = excluded.error, "
        "attempts = dead_letters.attempts + 1, at_ms = excluded.at_ms, resolved_ms = NULL",
        [(ws, seq, stage, error[:2000], now) for ws, seq, stage, error in letters],
    )


def _write_merges(
    store: PeopleStore, tx: Tx, merges: list[Merge], last: Callable[[int], int]
) -> None:
    """Move what belongs to the merged persons (as stored) to where `last` says they are after
    all of the batch's merges, and record the merges: a statement per table for the whole
    batch, not one per merge (on SQLite each
    statement waits for the GIL once it is done, up to the switch interval while the stages run
    on the other thread: eight statements per merge cost the writer ~11 µs per event on the
    pipeline's throughput row, docs/benchmarks.md).

    A person merged and then merged on within the batch (a into b, then b into c) moves straight
    to the last survivor: the state is the one the merges, one after the other, leave. Each
    merge's record lists the identifiers stored on its merged person when it ran, those moved
    there by the batch's earlier merges included, as one statement per merge would have."""
    if not merges:
        return
    moves = [(m.merged_id, last(m.merged_id)) for m in merges]
    if store.dialect == "postgres":
        pairs = "WITH m(from_id, to_id) AS (SELECT * FROM unnest(?::bigint[], ?::bigint[])) "
        params: tuple[Any, ...] = ([old for old, _ in moves], [new for _, new in moves])
    else:
        pairs = "WITH m(from_id, to_id) AS (SELECT value->>0, value->>1 FROM json_each(?)) "
        params = (store.json(moves),)
    held: dict[int, list[int]] = {}
    for person_id, identifier_id in tx.all(
        pairs + "SELECT i.person_id, i.id FROM identifiers i JOIN m ON i.person_id = m.from_id",
        params,
    ):
        held.setdefault(person_id, []).append(identifier_id)
    tx.run(
        pairs + "UPDATE identifiers SET person_id = m.to_id FROM m "
        "WHERE identifiers.person_id = m.from_id",
        params,
    )
    tx.run(
        pairs + "UPDATE person_events SET person_id = m.to_id FROM m "
        "WHERE person_events.person_id = m.from_id",
        params,
    )
    tx.run(
        pairs + "UPDATE person_history SET person_id = m.to_id FROM m "
        "WHERE person_history.person_id = m.from_id AND person_history.identifier_id IS NOT NULL",
        params,
    )
    # the earliest join of every membership the moved persons and their survivor had
    tx.run(
        pairs + "INSERT INTO account_members (workspace_id, group_id, person_id, joined_ms) "
        "SELECT a.workspace_id, a.group_id, m.to_id, min(a.joined_ms) FROM account_members a "
        "JOIN m ON a.person_id = m.from_id WHERE true GROUP BY a.workspace_id, a.group_id, m.to_id "
        f"{_KEEP_EARLIEST_JOIN}",
        params,
    )
    tx.run(pairs + "DELETE FROM account_members WHERE person_id IN (SELECT from_id FROM m)", params)
    tx.run(
        pairs
        + "UPDATE persons SET merged_into = m.to_id FROM m WHERE persons.merged_into = m.from_id",
        params,
    )
    records = []
    for merge in merges:
        stored = held.pop(merge.merged_id, [])
        held.setdefault(merge.survivor_id, []).extend(stored)
        records.append(
            (merge.id, merge.workspace_id, merge.survivor_id, merge.merged_id, merge.reason,
             merge.message_id, merge.seq, merge.at_ms,
             store.json(sorted(stored + merge.new_identifier_ids)))
        )  # fmt: skip
    tx.insert(
        "INSERT INTO merges (id, workspace_id, survivor_id, merged_id, reason, message_id, seq, "
        "at_ms, identifier_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        records,
    )


UPSERT_PERSON = (
    "INSERT INTO persons (id, workspace_id, merged_into, traits, trait_ts, event_counts, "
    "first_seen_ms, last_seen_ms, events, revenue_micros, user_ids, identifiers, "
    "identifiers_refused, created_ms, updated_ms) "
    "VALUES (?, ?, ?, {j}, {j}, {j}, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "merged_into = excluded.merged_into, traits = excluded.traits, trait_ts = excluded.trait_ts, "
    "event_counts = excluded.event_counts, first_seen_ms = excluded.first_seen_ms, "
    "last_seen_ms = excluded.last_seen_ms, events = excluded.events, "
    "revenue_micros = excluded.revenue_micros, user_ids = excluded.user_ids, "
    "identifiers = excluded.identifiers, identifiers_refused = excluded.identifiers_refused, "
    "updated_ms = excluded.updated_ms"
)
_UPSERT_ACCOUNT = (
    "INSERT INTO accounts (workspace_id, group_id, traits, trait_ts, event_counts, first_seen_ms, "
    "last_seen_ms, events, created_ms, updated_ms) VALUES (?, ?, {j}, {j}, {j}, ?, ?, ?, ?, ?) "
    "ON CONFLICT (workspace_id, group_id) DO UPDATE SET traits = excluded.traits, "
    "trait_ts = excluded.trait_ts, event_counts = excluded.event_counts, "
    "first_seen_ms = excluded.first_seen_ms, last_seen_ms = excluded.last_seen_ms, "
    "events = excluded.events, updated_ms = excluded.updated_ms"
)


def person_params(store: PeopleStore, p: PersonRow, now: int) -> tuple[Any, ...]:
    f = p.profile
    return (
        p.id, p.workspace_id, p.merged_into, store.json(f.traits), store.json(f.trait_ts),
        store.json(f.event_counts), f.first_seen_ms, f.last_seen_ms or 0, f.events, f.revenue_micros,
        p.user_ids, p.identifiers, p.identifiers_refused, p.created_ms, now,
    )  # fmt: skip


PERSON_TYPES = (
    "bigint", "bigint", "bigint", "jsonb", "jsonb", "jsonb", "bigint", "bigint", "bigint",
    "bigint", "bigint", "bigint", "bigint", "bigint", "bigint",
)  # fmt: skip
# A stored person whose traits the batch did not touch: everything else (traits stay as stored).
_COUNTERS = (
    ("merged_into", "bigint"), ("event_counts", "jsonb"), ("first_seen_ms", "bigint"),
    ("last_seen_ms", "bigint"), ("events", "bigint"), ("revenue_micros", "bigint"),
    ("user_ids", "bigint"), ("identifiers", "bigint"), ("identifiers_refused", "bigint"),
    ("updated_ms", "bigint"),
)  # fmt: skip


def _counter_params(store: PeopleStore, p: PersonRow, now: int) -> tuple[Any, ...]:
    f = p.profile
    return (
        p.id, p.merged_into, store.json(f.event_counts), f.first_seen_ms, f.last_seen_ms or 0,
        f.events, f.revenue_micros, p.user_ids, p.identifiers, p.identifiers_refused, now,
    )  # fmt: skip


def _stored_row(p: PersonRow, counters: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row (PERSON_COLUMNS) of a person written by its counters (`_counter_params`)."""
    assert p.stored_traits is not None
    pid, merged_into, *counted, updated = counters
    return (pid, p.workspace_id, merged_into, *p.stored_traits, *counted, p.created_ms, updated)


def _account_params(store: PeopleStore, a: AccountRow, now: int) -> tuple[Any, ...]:
    f = a.profile
    return (
        a.workspace_id, a.group_id, store.json(f.traits), store.json(f.trait_ts),
        store.json(f.event_counts), f.first_seen_ms, f.last_seen_ms or 0, f.events, a.created_ms,
        now,
    )  # fmt: skip
