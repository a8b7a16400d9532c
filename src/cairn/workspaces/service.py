"""Creating and finding workspaces, sources and tokens. Tokens are stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from cairn.errors import InvalidToken, NotFound, SourceDisabled, UnknownWriteKey
from cairn.storage.base import Source, Storage, Token, Workspace

__all__ = [
    "DEFAULT_WORKSPACE",
    "Bootstrap",
    "SourceCache",
    "authenticate",
    "bootstrap",
    "create_source",
    "create_token",
    "new_identity_secret",
    "resolve_workspace",
]

DEFAULT_WORKSPACE = "default"
TOKEN_PREFIX = "cairn_"  # noqa: S105 (a prefix, not a secret)


@dataclass(frozen=True)
class Bootstrap:
    """What a first start created; `token` is the only time the admin token is ever shown."""

    workspace: Workspace
    source: Source
    token: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def bootstrap(storage: Storage) -> Bootstrap | None:
    """Create the `default` workspace, a source and an admin token when the database is new."""
    if storage.list_workspaces():
        return None
    workspace = storage.create_workspace(DEFAULT_WORKSPACE)
    source = create_source(storage, workspace, "default")
    _, token = create_token(storage, workspace, "created on first start")
    return Bootstrap(workspace, source, token)


def resolve_workspace(storage: Storage, name: str) -> Workspace:
    workspace = storage.workspace_by_name(name)
    if workspace is None:
        raise NotFound(f"no workspace named {name!r}")
    return workspace


def create_source(storage: Storage, workspace: Workspace, name: str) -> Source:
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("a source name must be 1 to 200 characters")
    return storage.create_source(
        workspace.id, name, "src_" + secrets.token_hex(6), secrets.token_urlsafe(24)
    )


def new_identity_secret() -> str:
    """A per-source secret for identity verification (user_hash = HMAC-SHA256(secret, userId))."""
    return "idv_" + secrets.token_hex(32)


def create_token(storage: Storage, workspace: Workspace, label: str = "") -> tuple[Token, str]:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = storage.create_token(workspace.id, "tok_" + secrets.token_hex(6), _hash(secret), label)
    return token, secret


def authenticate(storage: Storage, secret: str | None) -> Token:
    """The token behind a bearer secret, or `InvalidToken`."""
    if not secret:
        raise InvalidToken("missing admin token: send Authorization: Bearer <token>")
    token = storage.token_by_hash(_hash(secret.strip()))
    if token is None:
        raise InvalidToken("unknown admin token")
    return token


class SourceCache:
    """Write key to source, cached for `ttl` seconds so the collector does not query per request."""

    def __init__(self, storage: Storage, ttl: float = 5.0) -> None:
        self._storage = storage
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Source | None]] = {}
        self._lock = threading.Lock()

    def cached(self, write_key: str) -> tuple[bool, Source | None]:
        entry = self._entries.get(write_key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def load(self, write_key: str) -> Source | None:
        source = self._storage.source_by_write_key(write_key)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[write_key] = (time.monotonic() + self._ttl, source)
        return source

    @staticmethod
    def check(write_key: str | None, source: Source | None) -> Source:
        if not write_key:
            raise UnknownWriteKey(
                "missing write key: send it as HTTP Basic user, X-Write-Key or writeKey"
            )
        if source is None:
            raise UnknownWriteKey("unknown write key")
        if not source.enabled:
            raise SourceDisabled(f"source {source.name!r} is disabled")
        return source
