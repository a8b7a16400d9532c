"""Plans: every event is checked before anything else sees it (docs/plans.md).

Naming rules always; the source's tracking plan when one is installed. Violations are stored with
the event (`event_violations`). A blocked event goes to the quarantine and stops here: it never
reaches profiles, segments or automations. In omit mode the offending properties are removed from
what the later stages see (the log keeps the message as sent).
"""

from __future__ import annotations

from cairn.pipeline.batch import Batch
from cairn.pipeline.event import Event
from cairn.pipeline.stages.identity import Attribution
from cairn.plans.naming import check_parts
from cairn.plans.plan import apply_omit, naming_result

__all__ = ["apply"]


def apply(batch: Batch, ev: Event, found: Attribution | None) -> Attribution | None:
    checker = batch.checker(ev.workspace_id, ev.source_id)
    if checker is None:
        return found
    if checker.plan is not None:
        result = checker.plan.check(ev.message)
    else:
        result = naming_result(check_parts(*ev.naming_parts(), checker.naming))
    if result.violations:
        name = ev.event if ev.type == "track" and ev.event else ev.type
        batch.violations += [
            (ev.seq, ev.workspace_id, ev.source_id, name, v.rule, v.path, v.severity, v.message,
             checker.version, result.action, ev.received_ms)
            for v in result.violations
        ]  # fmt: skip
    if result.action == "block":
        batch.quarantine.append(
            (ev.seq, ev.workspace_id, ev.source_id, checker.version,
             [{"rule": v.rule, "path": v.path, "severity": v.severity, "message": v.message}
              for v in result.violations], ev.received_ms)
        )  # fmt: skip
        ev.blocked = True
    elif result.omit:
        ev.replace_message(apply_omit(ev.message, result.omit))
    return found
