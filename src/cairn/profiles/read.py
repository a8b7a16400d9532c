"""Reading people and accounts for the API and the CLI, as the JSON documents docs/api.md shows."""

from __future__ import annotations

from typing import Any

from cairn.errors import BadRequest, NotFound
from cairn.identity.rules import IdentityRules
from cairn.ingest.timestamps import format_ms
from cairn.pipeline.batch import account_from_row, person_from_row
from cairn.storage.people import ACCOUNT_COLUMNS, PERSON_COLUMNS, PeopleStore, decode_json

__all__ = [
    "account_json",
    "list_accounts",
    "list_people",
    "lookup",
    "person_json",
    "root_of",
    "user_ids",
]

LOOKUP_KINDS = ("user_id", "anonymous_id", "email")


def _iso(ms: int | None) -> str | None:
    return format_ms(ms) if ms else None


def _counts(raw: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    return {
        name: {"count": count, "first": _iso(first), "last": _iso(last)}
        for name, (count, first, last) in sorted(raw.items())
    }


def root_of(store: PeopleStore, workspace_id: int, person_id: int) -> int:
    """The person a (possibly merged) person id stands for now; `NotFound` when unknown."""
    rows = store.rows(
        "SELECT merged_into FROM persons WHERE id = ? AND workspace_id = ?",
        (person_id, workspace_id),
    )
    if not rows:
        raise NotFound(f"no person {person_id}")
    return int(rows[0][0]) if rows[0][0] is not None else person_id


def user_ids(store: PeopleStore, person_ids: list[int]) -> dict[int, str]:
    """A user id of each person that has one (the first linked), for lists of people."""
    if not person_ids:
        return {}
    marks = ",".join("?" * len(person_ids))
    rows = store.rows(
        f"SELECT person_id, value FROM identifiers WHERE kind = 'user_id' "
        f"AND person_id IN ({marks}) ORDER BY id DESC",
        tuple(person_ids),
    )
    return {int(pid): str(value) for pid, value in rows}


def person_json(
    store: PeopleStore, workspace_id: int, person_id: int, *, max_identifiers: int = 100
) -> dict[str, Any]:
    root = root_of(store, workspace_id, person_id)
    person = person_from_row(
        store.rows(f"SELECT {PERSON_COLUMNS} FROM persons WHERE id = ?", (root,))[0]
    )
    profile = person.profile
    identifiers = store.rows(
        "SELECT kind, value FROM identifiers WHERE person_id = ? ORDER BY id", (root,)
    )
    accounts = store.rows(
        "SELECT m.group_id, m.joined_ms, a.traits FROM account_members m LEFT JOIN accounts a "
        "ON a.workspace_id = m.workspace_id AND a.group_id = m.group_id "
        "WHERE m.person_id = ? ORDER BY m.joined_ms, m.group_id",
        (root,),
    )
    merges = store.rows(
        "SELECT id, merged_id, at_ms, reason, message_id, survivor_id FROM merges "
        "WHERE undone_ms IS NULL AND (survivor_id = ? OR survivor_id IN "
        "(SELECT id FROM persons WHERE merged_into = ?)) ORDER BY at_ms, id",
        (root, root),
    )
    return {
        "id": root,
        "traits": profile.traits,
        "identifiers": [{"kind": kind, "value": value} for kind, value in identifiers],
        "first_seen": _iso(profile.first_seen_ms),
        "last_seen": _iso(profile.last_seen_ms),
        "events": profile.events,
        "revenue": profile.revenue_micros / 1_000_000,
        "accounts": [
            {"group_id": gid, "joined_at": _iso(joined), "traits": decode_json(traits or "{}")}
            for gid, joined, traits in accounts
        ],
        "event_counts": _counts(profile.event_counts),
        "merged_from": [
            {
                "merge_id": mid,
                "person_id": merged,
                "at": _iso(at),
                "reason": reason,
                "message_id": message_id,
                "into": survivor,
            }
            for mid, merged, at, reason, message_id, survivor in merges
        ],
        "identifier_limit": {
            "max": max_identifiers,
            "identifiers": person.identifiers,
            "refused": person.identifiers_refused,
        },
        "created_at": _iso(person.created_ms),
    }


def lookup(
    store: PeopleStore, rules: IdentityRules, workspace_id: int, params: dict[str, str | None]
) -> int:
    """The person id an identifier belongs to (exactly one of user_id, anonymous_id, email)."""
    given = [(kind, value) for kind, value in params.items() if value]
    if len(given) != 1 or given[0][0] not in LOOKUP_KINDS:
        raise BadRequest("give exactly one of user_id, anonymous_id or email", code="invalid_query")
    kind, value = given[0]
    assert value is not None
    if kind == "email":
        email = value.strip().lower()
        rows = store.rows(
            "SELECT person_id FROM identifiers WHERE workspace_id = ? AND kind = 'email' "
            "AND value = ?",
            (workspace_id, email),
        )
        if not rows and not rules.link_email:
            extract = (
                "traits->>'email'"
                if store.dialect == "postgres"
                else "json_extract(traits, '$.email')"
            )
            rows = store.rows(
                f"SELECT id FROM persons WHERE workspace_id = ? AND merged_into IS NULL "
                f"AND lower({extract}) = ? ORDER BY last_seen_ms DESC LIMIT 1",
                (workspace_id, email),
            )
    else:
        rows = store.rows(
            "SELECT person_id FROM identifiers WHERE workspace_id = ? AND kind = ? AND value = ?",
            (workspace_id, kind, value),
        )
    if not rows:
        raise NotFound(f"no person with {kind} {value!r}")
    return int(rows[0][0])


def _page_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    seen, dot, key = cursor.partition(".")
    try:
        if not dot or not key:
            raise ValueError
        return int(seen), key
    except ValueError:
        raise BadRequest(f"invalid cursor {cursor!r}", code="invalid_cursor") from None


def list_people(
    store: PeopleStore, workspace_id: int, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Active persons, most recently seen first."""
    after = _page_cursor(cursor)
    where, params = "workspace_id = ? AND merged_into IS NULL", list[Any]([workspace_id])
    if after is not None:
        try:
            key = int(after[1])
        except ValueError:
            raise BadRequest(f"invalid cursor {cursor!r}", code="invalid_cursor") from None
        where += " AND (last_seen_ms, id) < (?, ?)"  # a range on the last-seen index
        params += [after[0], key]
    rows = store.rows(
        f"SELECT {PERSON_COLUMNS} FROM persons WHERE {where} "
        "ORDER BY last_seen_ms DESC, id DESC LIMIT ?",
        (*params, limit),
    )
    people = [person_from_row(row) for row in rows]
    data = [
        {"id": p.id, "traits": p.profile.traits, "first_seen": _iso(p.profile.first_seen_ms),
         "last_seen": _iso(p.profile.last_seen_ms), "events": p.profile.events}
        for p in people
    ]  # fmt: skip
    last = people[-1] if len(people) == limit else None
    next_cursor = f"{last.profile.last_seen_ms or 0}.{last.id}" if last else None
    return {"data": data, "next_cursor": next_cursor}


def account_json(store: PeopleStore, workspace_id: int, group_id: str) -> dict[str, Any]:
    rows = store.rows(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE workspace_id = ? AND group_id = ?",
        (workspace_id, group_id),
    )
    if not rows:
        raise NotFound(f"no account {group_id!r}")
    account = account_from_row(rows[0])
    members = store.rows(
        "SELECT m.person_id, m.joined_ms, p.traits FROM account_members m JOIN persons p "
        "ON p.id = m.person_id WHERE m.workspace_id = ? AND m.group_id = ? "
        "ORDER BY m.joined_ms, m.person_id",
        (workspace_id, group_id),
    )
    return {
        "group_id": group_id,
        "traits": account.profile.traits,
        "first_seen": _iso(account.profile.first_seen_ms),
        "last_seen": _iso(account.profile.last_seen_ms),
        "events": account.profile.events,
        "event_counts": _counts(account.profile.event_counts),
        "members": [
            {"person_id": pid, "joined_at": _iso(joined), "traits": decode_json(traits)}
            for pid, joined, traits in members
        ],
        "created_at": _iso(account.created_ms),
    }


def list_accounts(
    store: PeopleStore, workspace_id: int, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    after = _page_cursor(cursor)
    where, params = "workspace_id = ?", list[Any]([workspace_id])
    if after is not None:
        where += " AND (last_seen_ms, group_id) < (?, ?)"
        params += [after[0], after[1]]
    rows = store.rows(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {where} "
        "ORDER BY last_seen_ms DESC, group_id DESC LIMIT ?",
        (*params, limit),
    )
    accounts = [account_from_row(row) for row in rows]
    data = [
        {"group_id": a.group_id, "traits": a.profile.traits,
         "first_seen": _iso(a.profile.first_seen_ms), "last_seen": _iso(a.profile.last_seen_ms),
         "events": a.profile.events}
        for a in accounts
    ]  # fmt: skip
    last = accounts[-1] if len(accounts) == limit else None
    next_cursor = f"{last.profile.last_seen_ms or 0}.{last.group_id}" if last else None
    return {"data": data, "next_cursor": next_cursor}
