"""Profiles: traits by event time, first and last seen, per-event counters, revenue.

`fold` is the whole rule for one event and one profile: the stage applies it as events arrive and
an unmerge applies it to recompute a person from their events, so both give the same profile.
"""

from __future__ import annotations

from typing import Any

from cairn.pipeline.batch import Batch
from cairn.pipeline.event import Event
from cairn.pipeline.stages.identity import Attribution
from cairn.profiles.state import Profile, revenue_micros

__all__ = ["apply", "fold"]


def fold(profile: Profile, ev: Event) -> dict[str, tuple[Any, Any]]:
    """Apply one event to a person's profile; return the trait changes it made."""
    profile.touch(ev.timestamp_ms, active=ev.active)
    changes: dict[str, tuple[Any, Any]] = {}
    if ev.type == "identify":
        traits = ev.section("traits")
        if traits:
            changes = profile.set_traits(traits, ev.timestamp_ms)
    elif ev.type == "track" and ev.event:
        profile.count_event(ev.event, ev.timestamp_ms)
        revenue = ev.section("properties").get("revenue")
        if revenue is not None:
            profile.revenue_micros += revenue_micros(revenue)
    return changes


def apply(batch: Batch, ev: Event, found: Attribution | None) -> Attribution | None:
    if found is None:
        return None
    person = found.person
    changes = fold(person.load_traits() if ev.type == "identify" else person.profile, ev)
    person.dirty = True
    if changes:
        data = {name: {"from": old, "to": new} for name, (old, new) in changes.items()}
        batch.record(ev, None, found.identifier, "trait_changed", {"changes": data})
    return found
