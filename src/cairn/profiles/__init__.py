"""Persons and accounts: traits by event time, counters, memberships (docs/people.md)."""

from cairn.profiles.state import Profile, canonical_trait

__all__ = ["Profile", "canonical_trait"]
