"""The automation engine: a follower of the pipeline (it runs in the pipeline's thread, under its
lease, after each batch) that turns triggers into runs and moves runs that are due.

Each `step()` does, in small slices:
1. triggers, each read with its own cursor and committed with the runs they start:
   - events the pipeline has attributed to a person (`person_events`, up to the pipeline's cursor),
   - segment entries and exits (`signals`),
   - trait changes (`person_history` rows of kind `trait_changed`);
   only those after the automation went live count, and events automations fed back into the log
   never trigger (no loops). The persons these touch have their waiting runs looked at again
   (goal, exit and wait_until conditions may now hold).
2. due runs (`automation_runs.due_ms`), moved by the `Stepper`;
3. due webhook deliveries, handed to the delivery pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cairn.automations.definition import Definition
from cairn.automations.runs import AUTOMATION_SOURCE, RUN_COLUMNS, Run, Stepper, history
from cairn.automations.store import Automation, Automations
from cairn.automations.webhooks import Deliveries
from cairn.finder.evaluate import evaluate, property_matches
from cairn.finder.segments import load_people
from cairn.ingest.messages import EventRecord
from cairn.ingest.timestamps import now_ms
from cairn.settings import Settings
from cairn.storage.people import PeopleStore, Tx, decode_json

__all__ = ["AutomationEngine"]

log = logging.getLogger(__name__)
PAGE = 500
EVENTS, SIGNALS, TRAITS = "automations:events", "automations:signals", "automations:traits"
_decode = msgspec.json.decode
_MESSAGE_KEYS = ("type", "event", "messageId", "userId", "anonymousId", "timestamp", "properties")


@dataclass
class _Candidate:
    automation: Automation
    person_id: int
    trigger: dict[str, Any]


@dataclass
class _Slice:
    """What one trigger source read: runs to start, persons touched, the cursor's new place."""

    cursor: str
    position: int
    candidates: list[_Candidate] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)


class AutomationEngine:
    """Triggers, runs and deliveries; `step()` does a slice of work and says whether there was any."""

    def __init__(
        self,
        store: PeopleStore,
        deliveries: Deliveries | None = None,
        *,
        append: Callable[[list[EventRecord]], None] | None = None,
    ) -> None:
        self.store = store
        self.automations = Automations(store)
        self.deliveries = deliveries
        self.stepper = Stepper(store, self.automations, append or self._append)
        self.runs_started = 0
        for name in (EVENTS, SIGNALS, TRAITS):
            store.ensure_cursor(name)

    @classmethod
    def from_settings(cls, store: PeopleStore, settings: Settings) -> AutomationEngine:
        deliveries = Deliveries(
            store,
            allow_private=settings.webhook_allow_private_targets,
            timeout=settings.webhook_timeout_seconds,
            horizon_s=settings.webhook_retry_horizon_seconds,
        )
        return cls(store, deliveries)

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Call `wake` when a delivery ends (the runner then steps the waiting run at once)."""
        if self.deliveries is not None:
            self.deliveries.on_done = wake

    def close(self) -> None:
        if self.deliveries is not None:
            self.deliveries.close()

    def _append(self, records: list[EventRecord]) -> None:
        self.store.storage.append(records, [])

    # the follower ---------------------------------------------------------------------------
    def step(self) -> bool:
        live = self.automations.all(state="live")
        worked = False
        for read in (self._events, self._signals, self._traits):
            found = read(live)
            if found is not None:
                self._commit(found)
                worked = True
        worked = self._due(live) or worked
        if self.deliveries is not None:
            worked = self.deliveries.dispatch() or worked
        return worked

    def next_due_ms(self) -> int | None:
        ids = [a.id for a in self.automations.all(state="live")]
        due: int | None = None
        if ids:
            marks = ",".join("?" * len(ids))
            rows = self.store.rows(
                f"SELECT min(due_ms) FROM automation_runs WHERE due_ms IS NOT NULL "
                f"AND automation_id IN ({marks})",
                ids,
            )
            due = rows[0][0]
        if self.deliveries is not None:
            other = self.deliveries.next_due_ms()
            due = other if due is None else due if other is None else min(due, other)
        return int(due) if due is not None else None

    # triggers --------------------------------------------------------------------------------
    def _position(self, name: str) -> int:
        return self.store.cursor(name).position

    def _events(self, live: list[Automation]) -> _Slice | None:
        start, end = self._position(EVENTS), self.store.cursor().position
        if start >= end:
            return None
        # Both tables bounded: with the bounds on person_events alone PostgreSQL merge-joined the
        # log from its first event up to the cursor on every step (256 to 322 ms at seq 300,000
        # on the test server, emptying its buffer pool; docs/benchmarks.md).
        rows = self.store.rows(
            "SELECT x.seq, x.person_id, x.type, x.event, e.source_id FROM person_events x "
            "JOIN events e ON e.seq = x.seq WHERE x.seq > ? AND x.seq <= ? "
            "AND e.seq > ? AND e.seq <= ? ORDER BY x.seq LIMIT ?",
            (start, end, start, end, PAGE),
        )
        found = _Slice(EVENTS, rows[-1][0] if len(rows) == PAGE else end)
        found.touched = {row[1] for row in rows}
        by_name: dict[tuple[int, str], list[Automation]] = {}
        for a in live:
            if a.definition.trigger.kind == "event":
                by_name.setdefault((a.workspace_id, a.definition.trigger.name), []).append(a)
        if not by_name:
            return found
        wanted = [r for r in rows if r[2] == "track" and r[4] != AUTOMATION_SOURCE]
        bodies = self._bodies([r[0] for r in wanted])
        for seq, pid, _, name, _ in wanted:
            ws, message = bodies.get(seq, (0, None))
            for a in by_name.get((ws, name), []):
                if (a.live_after_seq is not None and seq <= a.live_after_seq) or message is None:
                    continue
                where = a.definition.trigger.where
                props = message.get("properties")
                props = props if isinstance(props, dict) else {}
                if where is not None and not property_matches(where, props, now_ms()):
                    continue
                event = {k: message[k] for k in _MESSAGE_KEYS if k in message}
                found.candidates.append(_Candidate(a, pid, {"type": "event", "seq": seq,
                                                            "event": event}))  # fmt: skip
        return found

    def _bodies(self, seqs: list[int]) -> dict[int, tuple[int, dict[str, Any]]]:
        out: dict[int, tuple[int, dict[str, Any]]] = {}
        for start in range(0, len(seqs), PAGE):
            chunk = seqs[start : start + PAGE]
            marks = ",".join("?" * len(chunk))
            for seq, ws, body in self.store.rows(
                f"SELECT seq, workspace_id, body FROM events WHERE seq IN ({marks})", chunk
            ):
                message = _decode(bytes(body))
                if isinstance(message, dict):
                    out[seq] = (ws, message)
        return out

    def _signals(self, live: list[Automation]) -> _Slice | None:
        start = self._position(SIGNALS)
        rows = self.store.rows(
            "SELECT id, workspace_id, kind, person_id, at_ms, data FROM signals WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (start, PAGE),
        )
        if not rows:
            return None
        found = _Slice(SIGNALS, rows[-1][0], touched={row[3] for row in rows})
        for _, ws, kind, pid, at, data in rows:
            name = decode_json(data).get("name")
            on = "enter" if kind == "entered_segment" else "exit"
            for a in live:
                trigger = a.definition.trigger
                if (a.workspace_id, trigger.kind, trigger.name, trigger.on) != (
                    ws, "segment", name, on
                ) or at < (a.live_since_ms or 0):  # fmt: skip
                    continue
                found.candidates.append(_Candidate(a, pid, {"type": "segment", "segment": name,
                                                            "on": on}))  # fmt: skip
        return found

    def _traits(self, live: list[Automation]) -> _Slice | None:
        start = self._position(TRAITS)
        high = self.store.rows("SELECT coalesce(max(id), 0) FROM person_history")[0][0]
        if high <= start:
            return None
        rows = self.store.rows(
            "SELECT h.id, h.workspace_id, h.person_id, h.seq, h.data, e.source_id "
            "FROM person_history h LEFT JOIN events e ON e.seq = h.seq WHERE h.id > ? "
            "AND h.id <= ? AND h.kind = 'trait_changed' ORDER BY h.id LIMIT ?",
            (start, high, PAGE),
        )
        found = _Slice(TRAITS, rows[-1][0] if len(rows) == PAGE else high)
        watching = [a for a in live if a.definition.trigger.kind == "trait"]
        for _, ws, pid, seq, data, source in rows:
            if not watching or source == AUTOMATION_SOURCE:
                continue
            changes = decode_json(data).get("changes") or {}
            for a in watching:
                trigger = a.definition.trigger
                change = changes.get(trigger.name)
                if a.workspace_id != ws or not isinstance(change, dict):
                    continue
                if seq is not None and a.live_after_seq is not None and seq <= a.live_after_seq:
                    continue
                old, new = change.get("from"), change.get("to")
                if trigger.matches_change(old, new):
                    found.candidates.append(_Candidate(a, pid, {"type": "trait", "seq": seq,
                        "trait": trigger.name, "from": old, "to": new}))  # fmt: skip
        return found

    # starting runs ---------------------------------------------------------------------------
    def _commit(self, found: _Slice) -> None:
        now = now_ms()
        admitted = self._audience(found.candidates, now)
        with self.store.tx() as tx:
            started: dict[tuple[int, int], int] = {}
            for candidate in admitted:
                if self._allowed(tx, candidate, started, now):
                    self._start(tx, candidate, now)
            if found.touched:
                self._touch(tx, found.touched, now)
            tx.run(
                "UPDATE cursors SET position = ?, updated_ms = ? WHERE name = ?",
                (found.position, now, found.cursor),
            )

    def _audience(self, candidates: list[_Candidate], now: int) -> list[_Candidate]:
        gated = [c for c in candidates if c.automation.definition.audience is not None]
        if not gated:
            return candidates
        conditions = [c.automation.definition.audience for c in gated]
        people = load_people(
            self.store, sorted({c.person_id for c in gated}), [c for c in conditions if c], now
        )
        out = []
        for c in candidates:
            audience = c.automation.definition.audience
            person = people.get(c.person_id)
            if audience is None or (person is not None and evaluate(audience, person, now)[0]):
                out.append(c)
        return out

    def _allowed(
        self, tx: Tx, c: _Candidate, started: dict[tuple[int, int], int], now: int
    ) -> bool:
        """The frequency policy, counting runs started earlier in this same slice."""
        frequency = c.automation.definition.frequency
        key = (c.automation.id, c.person_id)
        if frequency.kind != "every_time":
            since = now - frequency.window_ms if frequency.kind == "once_per" else -1
            count = tx.all(
                "SELECT count(*) FROM automation_runs WHERE automation_id = ? AND person_id = ? "
                "AND created_ms > ?",
                (c.automation.id, c.person_id, since),
            )[0][0]
            limit = frequency.n if frequency.kind == "max" else 1
            if count + started.get(key, 0) >= limit:
                return False
        started[key] = started.get(key, 0) + 1
        return True

    def _start(self, tx: Tx, c: _Candidate, now: int) -> None:
        definition: Definition = c.automation.definition
        run_id = tx.all(
            "INSERT INTO automation_runs (workspace_id, automation_id, version, person_id, state, "
            "step, step_ms, due_ms, trigger, created_ms, updated_ms) "
            "VALUES (?, ?, ?, ?, 'active', ?, ?, ?, {j}, ?, ?) RETURNING id",
            (c.automation.workspace_id, c.automation.id, c.automation.version, c.person_id,
             definition.steps[0].id, now, now, self.store.json(c.trigger), now, now),
        )[0][0]  # fmt: skip
        run = Run(run_id, c.automation.workspace_id, c.automation.id, c.automation.version,
                  c.person_id, "active", definition.steps[0].id, now, now, c.trigger, now)  # fmt: skip
        history(tx, self.store, run, "automation_entered", definition.name, trigger=c.trigger)
        self.runs_started += 1

    def _touch(self, tx: Tx, persons: set[int], now: int) -> None:
        ids = sorted(persons)
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            marks = ",".join("?" * len(chunk))
            tx.run(
                f"UPDATE automation_runs SET due_ms = ? WHERE person_id IN ({marks}) "
                "AND state = 'waiting' AND due_ms > ?",
                (now, *chunk, now),
            )

    # due runs --------------------------------------------------------------------------------
    def _due(self, live: list[Automation]) -> bool:
        if not live:
            return False
        ids = [a.id for a in live]
        marks = ",".join("?" * len(ids))
        rows = self.store.rows(
            f"SELECT {RUN_COLUMNS} FROM automation_runs WHERE due_ms IS NOT NULL AND due_ms <= ? "
            f"AND automation_id IN ({marks}) ORDER BY due_ms, id LIMIT ?",
            (now_ms(), *ids, PAGE),
        )
        if not rows:
            return False
        self.stepper.advance([Run.from_row(row) for row in rows])
        return True
