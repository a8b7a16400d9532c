"""What the people pages show: rows of people and timeline entries, names, labels and links."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from cairn.ingest.messages import MESSAGE_TYPES
from cairn.profiles import read
from cairn.storage.people import PeopleStore
from cairn.timeline.query import HISTORY_KINDS
from cairn.web.pages import message_label

__all__ = [
    "PersonRow",
    "TimelineRow",
    "account_url",
    "display_name",
    "person_rows",
    "shown",
    "timeline_filters",
    "timeline_row",
]


@dataclass(frozen=True, slots=True)
class PersonRow:
    id: int
    name: str
    email: str
    user_id: str
    last_seen: str | None
    events: int | None  # segment member lists do not count them


@dataclass(frozen=True, slots=True)
class TimelineRow:
    key: str
    at: str
    kind: str
    is_event: bool
    label: str
    link: str | None
    detail: str


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def shown(value: Any) -> str:
    """A trait value as a cell: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def display_name(traits: dict[str, Any], user_id: str = "") -> str:
    """What a person is called: name, first and last name, email, user id, or nothing."""
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [traits.get(k) for k in ("first_name", "last_name")]
    joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    email = traits.get("email")
    return joined or (email if isinstance(email, str) else "") or user_id


def person_rows(store: PeopleStore, items: list[dict[str, Any]]) -> list[PersonRow]:
    users = read.user_ids(store, [int(item["id"]) for item in items])
    rows = []
    for item in items:
        traits, user = item["traits"], users.get(int(item["id"]), "")
        email = traits.get("email")
        rows.append(
            PersonRow(
                id=item["id"],
                name=display_name(traits, user),
                email=email if isinstance(email, str) else "",
                user_id=user,
                last_seen=item["last_seen"],
                events=item.get("events"),
            )
        )
    return rows


def _history_label(kind: str, data: dict[str, Any]) -> tuple[str, str | None]:
    """A history entry's one-line summary, and where it points (a person, account, segment)."""
    other = data.get("person_id")
    if kind == "trait_changed":
        changes = data.get("changes", {})
        parts = [f"{k}: {shown(v.get('from'))} → {shown(v.get('to'))}" for k, v in changes.items()]
        return "; ".join(parts[:4]) + (" …" if len(parts) > 4 else ""), None
    if kind == "joined_account":
        group = str(data.get("group_id", ""))
        return group, account_url(group)
    if kind in ("merged", "merged_into", "unmerged"):
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"person {other}{reason}", f"/people/{other}" if other is not None else None
    if kind in ("entered_segment", "left_segment"):
        return str(data.get("name", "")), f"/segments/{data.get('segment_id')}"
    return str(data.get("name", "")), None


def timeline_row(item: dict[str, Any]) -> TimelineRow:
    if item["kind"] == "event":
        message = item["message"]
        return TimelineRow(
            key=f"e{item['seq']}",
            at=item["at"],
            kind=str(item.get("type") or "event"),
            is_event=True,
            label=message_label(message),
            link=None,
            detail=_pretty(message),
        )
    data = item["data"] if isinstance(item["data"], dict) else {"data": item["data"]}
    label, link = _history_label(item["kind"], data)
    return TimelineRow(
        key=f"h{item['id']}",
        at=item["at"],
        kind=item["kind"],
        is_event=False,
        label=label,
        link=link,
        detail=_pretty(data),
    )


def account_url(group_id: str) -> str:
    """`/accounts/{id}`; ids a path cannot carry (a slash is decoded before routing, browsers
    fold dot segments, `timeline` is the fragment's path) go in the query string instead."""
    if "/" in group_id or group_id in ("", ".", "..", "timeline"):
        return "/accounts?" + urlencode({"id": group_id})
    return "/accounts/" + quote(group_id, safe="")


def timeline_filters() -> list[tuple[str, str]]:
    """The timeline's type filter: all events, history only, then each kind."""
    return [
        (",".join(MESSAGE_TYPES), "Events only"),
        (",".join(HISTORY_KINDS), "History only"),
        *((kind, kind) for kind in MESSAGE_TYPES),
        *((kind, kind.replace("_", " ")) for kind in HISTORY_KINDS),
    ]
