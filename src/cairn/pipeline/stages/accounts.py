"""Accounts: group calls set account traits and memberships; events carrying `context.groupId`
(and group calls) count on the account too."""

from __future__ import annotations

from cairn.pipeline.batch import Batch
from cairn.pipeline.event import Event
from cairn.pipeline.stages.identity import Attribution
from cairn.profiles.state import Profile

__all__ = ["apply", "fold"]


def fold(profile: Profile, ev: Event) -> None:
    """Apply one event to its account's profile."""
    profile.touch(ev.timestamp_ms, active=ev.active)
    if ev.type == "group":
        traits = ev.section("traits")
        if traits:
            profile.set_traits(traits, ev.timestamp_ms)
    elif ev.type == "track" and ev.event:
        profile.count_event(ev.event, ev.timestamp_ms)


def apply(batch: Batch, ev: Event, found: Attribution | None) -> Attribution | None:
    if found is None:
        return None
    group_id = ev.group_id
    if group_id is None:
        return found
    account = batch.account(ev.workspace_id, group_id)
    fold(account.profile, ev)
    account.dirty = True
    if ev.type == "group":
        batch.join(ev, group_id, found.person, found.identifier)
    return found
