"""Durable runs: one person going through one automation's steps, in order.

A run is a row with the path of the step it is at (`step`), when it got there (`step_ms`) and when
the engine should next look at it (`due_ms`). `Stepper.advance` moves due runs as far as they can
go now: goal and exit are checked before every step (reaching the goal ends the run as
converted, the exit condition as exited), waits and wait_untils set `due_ms`, a webhook leaves the
run `delivering` until its delivery is done.

Exactly once per run step: state changes, in-app messages and webhook deliveries are written in
the transaction that moves the run. Events fed back into the log (set_traits, track) are appended
first, with a message id and timestamp that depend only on the run and step, so a crash between
appending and moving the run appends the same event again and the log drops the duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cairn.automations.definition import (
    Branch,
    Definition,
    Message,
    SetTraits,
    Step,
    Track,
    Wait,
    WaitUntil,
    Webhook,
    first_of,
    next_step,
    step_at,
)
from cairn.automations.store import Automations
from cairn.automations.templates import render
from cairn.automations.webhooks import workspace_secret
from cairn.finder.evaluate import PersonData, evaluate
from cairn.finder.segments import load_people
from cairn.finder.tree import Condition
from cairn.ingest.messages import EventRecord, RequestInfo, normalize
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.storage.people import PeopleStore, Tx, decode_json

__all__ = ["AUTOMATION_SOURCE", "ENDED", "Run", "Stepper", "history"]

log = logging.getLogger(__name__)

# The source of events automations feed back into the log. No write key maps to it, so no client
# can send as it, and events from it never trigger an automation (no loops).
AUTOMATION_SOURCE = "cairn:automations"
ENDED = ("completed", "converted", "exited", "failed")
_MAX_STEPS_AT_ONCE = 100
RUN_COLUMNS = (
    "id, workspace_id, automation_id, version, person_id, state, step, step_ms, due_ms, trigger, "
    "created_ms"
)


@dataclass
class Run:
    id: int
    workspace_id: int
    automation_id: int
    version: int
    person_id: int
    state: str
    step: str | None
    step_ms: int
    due_ms: int | None
    trigger: dict[str, Any]
    created_ms: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Run:
        return cls(*row[:9], decode_json(row[9]), row[10])  # type: ignore[call-arg]


def history(tx: Tx, store: PeopleStore, run: Run, kind: str, name: str, **extra: Any) -> None:
    """A run's entry on the person's timeline."""
    data = {"automation_id": run.automation_id, "name": name, "run_id": run.id, **extra}
    tx.run(
        "INSERT INTO person_history (workspace_id, person_id, identifier_id, seq, at_ms, kind, "
        "data) VALUES (?, ?, NULL, NULL, ?, ?, {j})",
        (run.workspace_id, run.person_id, now_ms(), kind, store.json(data)),
    )


def conditions_of(definition: Definition) -> list[Condition]:
    found = [c for c in (definition.audience, definition.goal, definition.exit) if c is not None]

    def walk(steps: tuple[Step, ...]) -> None:
        for step in steps:
            if isinstance(step, WaitUntil | Branch):
                found.append(step.condition)
                walk(step.then)
                walk(step.otherwise)

    walk(definition.steps)
    return found


class Stepper:
    """Moves runs. `append` writes records to the log (the storage's append)."""

    def __init__(
        self,
        store: PeopleStore,
        automations: Automations,
        append: Callable[[list[EventRecord]], None],
    ) -> None:
        self.store = store
        self.automations = automations
        self.append = append
        self.steps_taken = 0
        self._conditions: dict[tuple[int, int], list[Condition]] = {}

    def advance(self, runs: list[Run]) -> None:
        """Move each run as far as it goes now: feed-back events first, then one transaction."""
        now = now_ms()
        people = self._people(runs, now)
        appended = self._feed_back(runs, people, now)
        try:
            with self.store.tx() as tx:
                for run in runs:
                    self._advance(tx, run, people.get(run.person_id), appended, now)
        except Exception:
            if len(runs) == 1:
                self._fail_alone(runs[0], now)
                return
            for run in runs:  # one bad run must not hold up the others
                self.advance([run])

    def _people(self, runs: list[Run], now: int) -> dict[int, PersonData | None]:
        needed: dict[int, list[Condition]] = {}
        for run in runs:
            conditions = self._conditions_for(run)
            if conditions:
                needed.setdefault(run.person_id, []).extend(conditions)
        if not needed:
            return {}
        every = [c for conds in needed.values() for c in conds]
        return load_people(self.store, list(needed), every, now)

    def _conditions_for(self, run: Run) -> list[Condition]:
        key = (run.automation_id, run.version)
        if key not in self._conditions:
            definition = self.automations.definition(*key)
            self._conditions[key] = conditions_of(definition)
        return self._conditions[key]

    def _fail_alone(self, run: Run, now: int) -> None:
        log.exception("automation run %d failed", run.id)
        with self.store.tx() as tx:
            self._end(tx, run, "failed", now, error="internal error while stepping the run")

    # feeding events back into the log ---------------------------------------------------------
    def _feed_back(
        self, runs: list[Run], people: dict[int, PersonData | None], now: int
    ) -> dict[tuple[int, str], str]:
        """Append the events of runs at a set_traits or track step: (run, step) -> "appended" or
        why it could not be made."""
        records: list[EventRecord] = []
        done: dict[tuple[int, str], str] = {}
        for run in runs:
            if run.state != "active" or run.step is None:
                continue
            definition = self.automations.definition(run.automation_id, run.version)
            step = step_at(definition.steps, run.step)
            if not isinstance(step, SetTraits | Track):
                continue
            if self._ends(definition, people.get(run.person_id), now) is not None:
                continue
            made = self._record(run, step, definition)
            if isinstance(made, EventRecord):
                records.append(made)
                made = "appended"
            done[(run.id, step.id)] = made
        if records:
            self.append(records)
        return done

    def _record(
        self, run: Run, step: SetTraits | Track, definition: Definition
    ) -> EventRecord | str:
        ids = self.store.rows(
            "SELECT kind, value FROM identifiers WHERE person_id = ? AND kind IN "
            "('user_id', 'anonymous_id') ORDER BY kind DESC, id LIMIT 1",
            (run.person_id,),
        )
        if not ids:
            return "the person has no user or anonymous id"
        context = self._context(run, definition)
        message: dict[str, Any] = {
            "messageId": f"cairn-automation-{run.id}-{step.id.replace('/', '.')}",
            "timestamp": format_ms(run.step_ms),
            "userId" if ids[0][0] == "user_id" else "anonymousId": ids[0][1],
            "context": {"cairn": {"automation_id": run.automation_id, "run_id": run.id,
                                  "step": step.id}},
        }  # fmt: skip
        if isinstance(step, SetTraits):
            message.update(type="identify", traits=render(step.traits, context))
        else:
            message.update(type="track", event=step.event,
                           properties=render(step.properties, context))  # fmt: skip
        info = RequestInfo(run.workspace_id, AUTOMATION_SOURCE, now_ms())
        made = normalize(message, 0, info)
        return made if isinstance(made, EventRecord) else f"the event was refused: {made.message}"

    def _context(self, run: Run, definition: Definition) -> dict[str, Any]:
        """What templates see: the triggering event, the person, their account, the run."""
        rows = self.store.rows("SELECT traits FROM persons WHERE id = ?", (run.person_id,))
        traits = decode_json(rows[0][0]) if rows else {}
        accounts = self.store.rows(
            "SELECT a.group_id, a.traits FROM account_members m JOIN accounts a "
            "ON a.workspace_id = m.workspace_id AND a.group_id = m.group_id "
            "WHERE m.person_id = ? ORDER BY m.joined_ms DESC LIMIT 1",
            (run.person_id,),
        )
        account = (
            {"id": accounts[0][0], "traits": decode_json(accounts[0][1])} if accounts else None
        )
        return {
            "event": run.trigger.get("event") or {},
            "trigger": run.trigger,
            "person": {"id": run.person_id, "traits": traits},
            "account": account,
            "automation": {"id": run.automation_id, "name": definition.name},
            "run": {"id": run.id},
        }

    # moving one run ---------------------------------------------------------------------------
    def _ends(self, definition: Definition, person: PersonData | None, now: int) -> str | None:
        if person is None:
            return None
        if definition.goal is not None and evaluate(definition.goal, person, now)[0]:
            return "converted"
        if definition.exit is not None and evaluate(definition.exit, person, now)[0]:
            return "exited"
        return None

    def _advance(
        self,
        tx: Tx,
        run: Run,
        person: PersonData | None,
        appended: dict[tuple[int, str], str],
        now: int,
    ) -> None:
        definition = self.automations.definition(run.automation_id, run.version)
        for _ in range(_MAX_STEPS_AT_ONCE):
            if run.step is None:
                self._end(tx, run, "completed", now)
                return
            ended = self._ends(definition, person, now)
            if ended is not None:
                self._end(tx, run, ended, now)
                return
            step = step_at(definition.steps, run.step)
            self.steps_taken += 1
            moved = self._step(tx, run, step, definition, person, appended, now)
            if not moved or run.state in ENDED:
                return
        self._save(tx, run, "active", now)  # a long chain of instant steps: go on next time

    def _step(
        self,
        tx: Tx,
        run: Run,
        step: Step,
        definition: Definition,
        person: PersonData | None,
        appended: dict[tuple[int, str], str],
        now: int,
    ) -> bool:
        """Do `step`; True if the run moved on to another step (or ended), False if it stays."""
        if isinstance(step, Wait):
            due = run.step_ms + step.ms
            if due > now:
                return self._hold(tx, run, step, "waiting", due, {"until": format_ms(due)})
            return self._go(tx, run, step, "waited", next_step(definition.steps, step.id), now)
        if isinstance(step, WaitUntil):
            return self._wait_until(tx, run, step, definition, person, now)
        if isinstance(step, Branch):
            ok = person is not None and evaluate(step.condition, person, now)[0]
            chosen = step.then if ok else step.otherwise
            target = first_of(chosen) or next_step(definition.steps, step.id)
            return self._go(tx, run, step, "then" if ok else "else", target, now)
        if isinstance(step, Webhook):
            return self._webhook(tx, run, step, definition, now)
        if isinstance(step, SetTraits | Track):
            fed = appended.get((run.id, step.id))
            if fed is None:  # reached in this pass: appended at the start of the next
                return self._hold(tx, run, step, None, now, None)
            if fed != "appended":
                self._end(tx, run, "failed", now, error=fed)
                return True
            outcome = "traits_set" if isinstance(step, SetTraits) else "tracked"
            return self._go(tx, run, step, outcome, next_step(definition.steps, step.id), now)
        return self._message(tx, run, step, definition, now)

    def _wait_until(
        self, tx: Tx, run: Run, step: WaitUntil, definition: Definition,
        person: PersonData | None, now: int,
    ) -> bool:  # fmt: skip
        ok, changes = (False, None) if person is None else evaluate(step.condition, person, now)
        deadline = run.step_ms + step.at_most_ms
        if ok:
            outcome = "skipped" if run.state == "active" else "met"
            target = first_of(step.then) or next_step(definition.steps, step.id)
            return self._go(tx, run, step, outcome, target, now)
        if now >= deadline:
            target = first_of(step.otherwise) or next_step(definition.steps, step.id)
            return self._go(tx, run, step, "timed_out", target, now)
        due = deadline if changes is None else min(deadline, max(changes, now + 1))
        return self._hold(tx, run, step, "waiting", due, {"until": format_ms(deadline)})

    def _webhook(self, tx: Tx, run: Run, step: Webhook, definition: Definition, now: int) -> bool:
        if run.state == "delivering":
            rows = tx.all(
                "SELECT id, status, last_error FROM webhook_deliveries WHERE run_id = ? AND step = ?",
                (run.id, step.id),
            )
            status = rows[0][1] if rows else "dead"
            if status in ("pending", "sending"):
                return self._hold(tx, run, step, "delivering", None, None)
            if status == "dead":
                error = f"webhook delivery {rows[0][0] if rows else '?'} failed: " + str(
                    rows[0][2] if rows else "missing"
                )
                self._record_step(
                    tx, run, step, "dead", {"delivery_id": rows[0][0] if rows else None}
                )
                self._end(tx, run, "failed", now, error=error)
                return True
            self._record_step(tx, run, step, "delivered", {"delivery_id": rows[0][0]})
            return self._go(tx, run, step, None, next_step(definition.steps, step.id), now)
        context = self._context(run, definition)
        body = self.store.json(render(step.body, context) if step.body is not None else context)
        secret = step.secret or workspace_secret(self.store, run.workspace_id, tx)
        key = f"cairn-run-{run.id}-step-{step.id.replace('/', '.')}"
        headers = {k: str(render(v, context)) for k, v in step.headers.items()}
        rows = tx.all(
            "INSERT INTO webhook_deliveries (workspace_id, automation_id, run_id, step, "
            "idempotency_key, url, headers, body, secret, status, next_ms, created_ms, updated_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, {j}, ?, ?, 'pending', ?, ?, ?) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            (run.workspace_id, run.automation_id, run.id, step.id, key, step.url,
             self.store.json(headers), body, secret, now, now, now),
        )  # fmt: skip
        data = {"delivery_id": rows[0][0]} if rows else {}
        return self._hold(tx, run, step, "delivering", None, data, outcome="queued")

    def _message(self, tx: Tx, run: Run, step: Message, definition: Definition, now: int) -> bool:
        content = render(step.content, self._context(run, definition))
        rows = tx.all(
            "INSERT INTO in_app_messages (workspace_id, person_id, automation_id, run_id, step, "
            "content, created_ms) VALUES (?, ?, ?, ?, ?, {j}, ?) ON CONFLICT (run_id, step) "
            "DO NOTHING RETURNING id",
            (run.workspace_id, run.person_id, run.automation_id, run.id, step.id,
             self.store.json(content), now),
        )  # fmt: skip
        data = {"message_id": rows[0][0]} if rows else {}
        self._record_step(tx, run, step, "stored", data)
        return self._go(tx, run, step, None, next_step(definition.steps, step.id), now)

    # writing ------------------------------------------------------------------------------------
    def _go(
        self, tx: Tx, run: Run, step: Step, outcome: str | None, target: str | None, now: int
    ) -> bool:
        if outcome is not None:
            self._record_step(tx, run, step, outcome, {"next": target})
        run.step, run.step_ms, run.state = target, now, "active"
        if target is None:
            self._end(tx, run, "completed", now)
        return True

    def _hold(
        self, tx: Tx, run: Run, step: Step, state: str | None, due: int | None,
        data: dict[str, Any] | None, *, outcome: str | None = None,
    ) -> bool:  # fmt: skip
        """The run stays at `step` (in `state`, looked at again at `due`)."""
        arriving = run.state == "active"
        if state is not None and arriving and (data is not None or outcome is not None):
            self._record_step(tx, run, step, outcome or state, data or {})
        run.state = state or run.state
        run.due_ms = due
        self._save(tx, run, run.state, now_ms(), due=due)
        return False

    def _save(self, tx: Tx, run: Run, state: str, now: int, *, due: int | None = -1) -> None:
        due_ms = now if due == -1 else due
        tx.run(
            "UPDATE automation_runs SET state = ?, step = ?, step_ms = ?, due_ms = ?, "
            "updated_ms = ? WHERE id = ?",
            (state, run.step, run.step_ms, due_ms, now, run.id),
        )

    def _record_step(
        self, tx: Tx, run: Run, step: Step, outcome: str, data: dict[str, Any]
    ) -> None:
        tx.run(
            "INSERT INTO automation_run_steps (run_id, step, kind, outcome, data, at_ms) "
            "VALUES (?, ?, ?, ?, {j}, ?)",
            (run.id, step.id, _kind(step), outcome, self.store.json(data), now_ms()),
        )

    def _end(self, tx: Tx, run: Run, state: str, now: int, *, error: str | None = None) -> None:
        run.state = state
        tx.run(
            "UPDATE automation_runs SET state = ?, due_ms = NULL, ended_ms = ?, updated_ms = ?, "
            "error = ? WHERE id = ?",
            (state, now, now, error, run.id),
        )
        name = self.automations.definition(run.automation_id, run.version).name
        extra = {"error": error} if error else {}
        history(tx, self.store, run, f"automation_{state}", name, **extra)


def _kind(step: Step) -> str:
    return {Wait: "wait", WaitUntil: "wait_until", Branch: "branch", Webhook: "webhook",
            SetTraits: "set_traits", Track: "track", Message: "message"}[type(step)]  # fmt: skip
