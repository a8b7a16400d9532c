"""Which identifiers may link to a person: junk ids, emails, the identifier limit, verification."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_JUNK_IDS", "IdentityRules", "user_hash", "verify_user_hash"]

# Values SDKs and templates send when they have no id. Compared trimmed and case-insensitively.
DEFAULT_JUNK_IDS = (
    "null", "undefined", "none", "nil", "nan", "0", "-1", "anonymous", "anon", "guest", "unknown",
    "[object object]", "{}", "[]", "n/a", "00000000-0000-0000-0000-000000000000",
)  # fmt: skip

MAX_IDENTIFIER_LENGTH = 512


@dataclass(frozen=True)
class IdentityRules:
    """The identity settings in effect (`identity_*` settings)."""

    junk_ids: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_JUNK_IDS))
    max_identifiers: int = 100
    link_email: bool = False

    @classmethod
    def from_settings(cls, junk: str, max_identifiers: int, link_email: bool) -> IdentityRules:
        extra = {item.strip().lower() for item in junk.split(",") if item.strip()}
        return cls(frozenset(DEFAULT_JUNK_IDS) | extra, max(max_identifiers, 2), link_email)

    def clean(self, value: object) -> str | None:
        """The identifier as linked, or None when it is missing or junk.

        Values are kept exactly as sent (ids are case-sensitive); only the junk test trims and
        folds case. Overlong values are junk: no real id is 512 characters long.
        """
        if not isinstance(value, str):
            return None
        stripped = value.strip()
        if not stripped or len(value) > MAX_IDENTIFIER_LENGTH:
            return None
        if stripped.lower() in self.junk_ids:
            return None
        return value

    def clean_email(self, value: object) -> str | None:
        """An email identifier: trimmed and lower-cased, and it must look like one."""
        if not self.link_email or not isinstance(value, str):
            return None
        email = value.strip().lower()
        local, at, domain = email.partition("@")
        if not at or not local or "." not in domain or len(email) > 254 or " " in email:
            return None
        return None if self.clean(email) is None else email

    def junk_list(self) -> Iterable[str]:
        return sorted(self.junk_ids)


def user_hash(secret: str, user_id: str) -> str:
    """What a browser must send as `user_hash` for `user_id`: hex(HMAC-SHA256(secret, user_id))."""
    return hmac.new(secret.encode("utf-8"), user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_user_hash(secret: str, user_id: str, sent: object) -> bool:
    if not isinstance(sent, str):
        return False
    return hmac.compare_digest(user_hash(secret, user_id), sent.strip().lower())
