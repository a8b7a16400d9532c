"""Identity: the event's ids to a person, linking new ids and merging persons by the rules.

- A user id, else an anonymous id, is the event's primary identifier: the event belongs to its
  person (`person_events`), so merges and unmerges move events by identifier.
- An anonymous person (no user id) merges into the user's person on any call carrying both ids.
- Two persons that both have user ids are never merged automatically: the anonymous id stays
  where it is (a shared device) and the event goes to the user's person.
- `alias(previousId, userId)` merges explicitly, whoever holds the ids.
- Pairs separated by an unmerge are never merged again automatically.
- On a source that requires identity verification, only identify calls (whose user_hash the
  collector checked) link an anonymous id to a user.
"""

from __future__ import annotations

from dataclasses import dataclass

from cairn.pipeline.batch import ANONYMOUS_ID, EMAIL, USER_ID, Batch, Identifier, PersonRow
from cairn.pipeline.event import Event

__all__ = ["Attribution", "apply", "wanted_identifiers"]


@dataclass(slots=True)
class Attribution:
    person: PersonRow
    identifier: Identifier


def wanted_identifiers(batch: Batch, ev: Event, wanted: dict[tuple[int, str], set[str]]) -> None:
    """Add the identifiers `ev` will look up to `wanted` (loaded for the batch in one go)."""
    rules = batch.rules
    for kind, value in _ids(batch, ev):
        wanted.setdefault((ev.workspace_id, kind), set()).add(value)
    if ev.type == "alias" and (previous := rules.clean(ev.previous_id)):
        wanted.setdefault((ev.workspace_id, USER_ID), set()).add(previous)
        wanted.setdefault((ev.workspace_id, ANONYMOUS_ID), set()).add(previous)


def _ids(batch: Batch, ev: Event) -> list[tuple[str, str]]:
    if ev.ids is not None:
        return ev.ids
    rules = batch.rules
    ids = []
    if (user := rules.clean(ev.user_id)) is not None:
        ids.append((USER_ID, user))
    if (anon := rules.clean(ev.anonymous_id)) is not None:
        ids.append((ANONYMOUS_ID, anon))
    if rules.link_email and ev.type == "identify":
        email = rules.clean_email(ev.section("traits").get("email"))
        if email is not None:
            ids.append((EMAIL, email))
    ev.ids = ids
    return ids


def apply(batch: Batch, ev: Event, _: Attribution | None) -> Attribution | None:
    ids = dict(_ids(batch, ev))
    user, anon, email = ids.get(USER_ID), ids.get(ANONYMOUS_ID), ids.get(EMAIL)
    if ev.type == "alias":
        return _alias(batch, ev, user, anon)
    if user is None and anon is None:
        batch.stats.unattributed += 1
        return None
    may_link = ev.type == "identify" or not batch.source_requires_hash(ev.source_id)
    ws = ev.workspace_id
    if user is not None:
        u = batch.identifier(ws, USER_ID, user)
        a = batch.identifier(ws, ANONYMOUS_ID, anon) if anon is not None else None
        if u is None:
            anon_person = batch.person(a.person_id) if a is not None else None
            if anon_person is not None and anon_person.user_ids == 0 and may_link:
                person = anon_person
            else:
                person = batch.new_person(ev)
            u = batch.link(ev, USER_ID, user, person, a if person is anon_person else None)
            if u is None:  # the anonymous person is full: the user starts a person of their own
                person = batch.new_person(ev)
                u = batch.link(ev, USER_ID, user, person, None)
                assert u is not None
        person = batch.person(u.person_id)
        if a is not None and a.person_id != person.id and may_link:
            other = batch.person(a.person_id)
            if other.user_ids == 0 and not batch.blocked(person.id, other.id):
                batch.merge(
                    ev, person, other, "identify" if ev.type == "identify" else "same_event"
                )
        elif a is None and anon is not None and may_link:
            batch.link(ev, ANONYMOUS_ID, anon, person, u)
        primary = u
    else:
        assert anon is not None
        a = batch.identifier(ws, ANONYMOUS_ID, anon)
        if a is None:
            person = batch.new_person(ev)
            a = batch.link(ev, ANONYMOUS_ID, anon, person, None)
            assert a is not None
        primary = a
    person = batch.person(primary.person_id)
    if email is not None:
        _email(batch, ev, person, primary, email)
    return Attribution(batch.person(primary.person_id), primary)


def _email(batch: Batch, ev: Event, person: PersonRow, primary: Identifier, email: str) -> None:
    e = batch.identifier(ev.workspace_id, EMAIL, email)
    if e is None:
        batch.link(ev, EMAIL, email, person, primary)
    elif e.person_id != person.id:
        other = batch.person(e.person_id)
        both_known = other.user_ids > 0 and person.user_ids > 0
        if not both_known and not batch.blocked(person.id, other.id):
            survivor, merged = (other, person) if person.user_ids == 0 else (person, other)
            batch.merge(ev, survivor, merged, "email")


def _alias(batch: Batch, ev: Event, user: str | None, anon: str | None) -> Attribution | None:
    ws = ev.workspace_id
    previous = batch.rules.clean(ev.previous_id)
    if user is None:
        batch.stats.unattributed += 1
        return None
    u = batch.identifier(ws, USER_ID, user)
    p = None
    if previous is not None and previous != user:
        p = batch.identifier(ws, USER_ID, previous) or batch.identifier(ws, ANONYMOUS_ID, previous)
    if u is None:
        if p is not None:
            person = batch.person(p.person_id)
            u = batch.link(ev, USER_ID, user, person, p)
        if u is None:
            person = batch.new_person(ev)
            u = batch.link(ev, USER_ID, user, person, None)
            assert u is not None
    person = batch.person(u.person_id)
    if p is None and previous is not None and previous != user:
        kind = ANONYMOUS_ID if previous == anon else USER_ID
        batch.link(ev, kind, previous, person, u)
    elif p is not None and p.person_id != person.id:
        other = batch.person(p.person_id)
        if not batch.blocked(person.id, other.id):
            batch.merge(ev, person, other, "alias")
    return Attribution(batch.person(u.person_id), u)
