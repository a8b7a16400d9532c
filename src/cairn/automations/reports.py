"""Reading runs back: an automation's runs with their steps, outcomes and delivery attempts."""

from __future__ import annotations

from typing import Any

from cairn.automations.webhooks import attempts_of
from cairn.errors import BadRequest, NotFound
from cairn.ids import parse_int
from cairn.ingest.timestamps import format_ms
from cairn.storage.people import PeopleStore, decode_json

__all__ = ["RUN_STATES", "list_runs", "run_json"]

RUN_STATES = ("active", "waiting", "delivering", "completed", "converted", "exited", "failed")
_COLUMNS = (
    "id, automation_id, version, person_id, state, step, due_ms, trigger, error, created_ms, "
    "updated_ms, ended_ms"
)


def list_runs(
    store: PeopleStore,
    automation_id: int,
    *,
    state: str | None = None,
    person_id: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first; `cursor` is the last id of the previous page."""
    clauses, params = ["automation_id = ?"], [automation_id]
    if state is not None:
        if state not in RUN_STATES:
            raise BadRequest(f"state is one of {', '.join(RUN_STATES)}", code="invalid_state")
        clauses.append("state = ?")
        params.append(state)  # type: ignore[arg-type]
    if person_id is not None:
        clauses.append("person_id = ?")
        params.append(person_id)
    if cursor:
        found = parse_int(cursor)
        if found is None:
            raise BadRequest(f"invalid cursor {cursor!r}", code="invalid_cursor")
        clauses.append("id < ?")
        params.append(found)
    rows = store.rows(
        f"SELECT {_COLUMNS} FROM automation_runs WHERE {' AND '.join(clauses)} "
        "ORDER BY id DESC LIMIT ?",
        (*params, limit),
    )
    runs = _with_steps(store, [_run(row) for row in rows])
    next_cursor = str(rows[-1][0]) if len(rows) == limit else None
    return {"data": runs, "next_cursor": next_cursor}


def run_json(store: PeopleStore, automation_id: int, run_id: int) -> dict[str, Any]:
    rows = store.rows(
        f"SELECT {_COLUMNS} FROM automation_runs WHERE automation_id = ? AND id = ?",
        (automation_id, run_id),
    )
    if not rows:
        raise NotFound(f"no run {run_id} of automation {automation_id}")
    return _with_steps(store, [_run(rows[0])])[0]


def _run(row: Any) -> dict[str, Any]:
    (rid, aid, version, pid, state, step, due, trigger, error, created, updated,
     ended) = row  # fmt: skip
    return {
        "id": rid, "automation_id": aid, "version": version, "person_id": pid, "state": state,
        "step": step, "due_at": format_ms(due) if due else None, "trigger": decode_json(trigger),
        "error": error, "started_at": format_ms(created), "updated_at": format_ms(updated),
        "ended_at": format_ms(ended) if ended else None, "steps": [], "deliveries": [],
    }  # fmt: skip


def _with_steps(store: PeopleStore, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not runs:
        return runs
    by_id = {run["id"]: run for run in runs}
    marks = ",".join("?" * len(by_id))
    for rid, step, kind, outcome, data, at in store.rows(
        "SELECT run_id, step, kind, outcome, data, at_ms FROM automation_run_steps "
        f"WHERE run_id IN ({marks}) ORDER BY id",
        list(by_id),
    ):
        by_id[rid]["steps"].append(
            {
                "step": step,
                "kind": kind,
                "outcome": outcome,
                "data": decode_json(data),
                "at": format_ms(at),
            }
        )
    deliveries = store.rows(
        "SELECT id, run_id, step, url, status, attempts, idempotency_key FROM webhook_deliveries "
        f"WHERE run_id IN ({marks}) ORDER BY id",
        list(by_id),
    )
    attempts = attempts_of(store, [row[0] for row in deliveries])
    for did, rid, step, url, status, count, key in deliveries:
        by_id[rid]["deliveries"].append(
            {
                "id": did,
                "step": step,
                "url": url,
                "status": status,
                "attempts": count,
                "idempotency_key": key,
                "attempt_log": attempts.get(did, []),
            }
        )
    return runs
