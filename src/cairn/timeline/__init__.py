"""Per-person and per-account history with cursor pagination (docs/people.md, "Timeline")."""

from cairn.timeline.query import TimelineQuery, account_timeline, person_timeline

__all__ = ["TimelineQuery", "account_timeline", "person_timeline"]
