"""Timeline: the event joins its person's timeline (and its account's, for B2B events).

The `person_events` row written here is also what makes replays safe: an event that has one was
applied, and a replay skips it (see the runner).
"""

from __future__ import annotations

from cairn.pipeline.batch import Batch
from cairn.pipeline.event import Event
from cairn.pipeline.stages.identity import Attribution

__all__ = ["apply"]


def apply(batch: Batch, ev: Event, found: Attribution | None) -> Attribution | None:
    if found is None:
        return None
    batch.attribute(ev, found.identifier)
    group_id = ev.group_id
    if group_id is not None:
        batch.account_events.append((ev.workspace_id, group_id, ev.seq, ev.timestamp_ms))
    return found
