"""Identifiers, the rules that link them to persons, merges and unmerges (docs/people.md)."""

from cairn.identity.rules import IdentityRules, user_hash

__all__ = ["IdentityRules", "user_hash"]
