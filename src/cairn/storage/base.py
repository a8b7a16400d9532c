"""The storage interface every backend implements, and the records it speaks in.

Backends: `cairn.storage.sqlite` (embedded default) and `cairn.storage.postgres`. The contract tests in
`tests/storage/test_contract.py` run against both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from importlib import resources

import msgspec

from cairn.ingest.messages import EventRecord, RejectedRecord
from cairn.settings import Settings

__all__ = [
    "AppendResult",
    "EventQuery",
    "LogEntry",
    "RejectedEntry",
    "Source",
    "Storage",
    "Token",
    "Workspace",
    "migration_scripts",
    "open_storage",
    "storage_for",
]


class Workspace(msgspec.Struct, frozen=True):
    id: int
    name: str
    created_ms: int


class Source(msgspec.Struct, frozen=True):
    id: str
    workspace_id: int
    name: str
    write_key: str
    enabled: bool
    created_ms: int
    identity_secret: str | None = None
    require_user_hash: bool = False


class Token(msgspec.Struct, frozen=True):
    id: str
    workspace_id: int
    label: str
    created_ms: int


class LogEntry(msgspec.Struct, frozen=True):
    """One stored event: the log columns and the message as stored (JSON bytes)."""

    seq: int
    workspace_id: int
    source_id: str
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp_ms: int
    received_ms: int
    body: bytes


class RejectedEntry(msgspec.Struct, frozen=True):
    id: int
    workspace_id: int
    source_id: str
    received_ms: int
    code: str
    message: str
    body: bytes


class AppendResult(msgspec.Struct, frozen=True):
    inserted: int
    duplicates: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters for the newest-first event listing; `before_seq` is the pagination cursor."""

    limit: int = 50
    before_seq: int | None = None
    after_seq: int | None = None
    type: str | None = None
    event: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    source_id: str | None = None


class Storage(ABC):
    """What Cairn needs from a database. Every method is synchronous and thread-safe.

    `append` is called by the log writer's one thread; everything else from anywhere. Every read that
    touches tenant data takes a `workspace_id`; only the log consumers' `read_log` crosses workspaces.
    """

    dialect: str

    # lifecycle
    @abstractmethod
    def migrate(self) -> int:
        """Apply pending migrations; return the schema version."""

    @abstractmethod
    def close(self) -> None: ...

    # the log
    @abstractmethod
    def append(
        self,
        events: Sequence[EventRecord],
        rejected: Sequence[RejectedRecord],
        *,
        durable: bool = True,
    ) -> AppendResult:
        """Store events (dropping duplicates by workspace, bucket and messageId) and rejections in one
        transaction. Durable when it returns; with `durable=False` (the log writer's group commit),
        only once the same thread's next `sync_log` has returned."""

    def sync_log(self) -> None:
        """Make this thread's appends made with `durable=False` durable (SQLite: the WAL's fsync,
        done after the append has given up the write turn, so other processes' commits need not
        wait for this disk flush). Backends whose commits are durable already do nothing."""
        return

    def append_turn(self) -> AbstractContextManager[None]:
        """Hold the log's append turn among processes (the log writer gathers its batch inside it,
        so requests that arrive while another process commits join this commit, not the next).
        `append` takes the turn itself when the caller does not hold it."""
        return nullcontext()

    @abstractmethod
    def read_log(self, after_seq: int, limit: int) -> list[LogEntry]:
        """Events with `seq > after_seq` in sequence order, across workspaces (for consumers)."""

    @abstractmethod
    def last_seq(self) -> int: ...

    @abstractmethod
    def query_events(self, workspace_id: int, query: EventQuery) -> list[LogEntry]:
        """One workspace's events matching `query`, newest first."""

    @abstractmethod
    def count_events(self, workspace_id: int) -> int: ...

    @abstractmethod
    def get_cursor(self, name: str) -> int:
        """A consumer's committed position (0 when it never committed)."""

    @abstractmethod
    def commit_cursor(self, name: str, position: int) -> None: ...

    @abstractmethod
    def list_rejected(
        self, workspace_id: int, *, before_id: int | None, limit: int
    ) -> list[RejectedEntry]: ...

    # workspaces, sources, tokens
    @abstractmethod
    def create_workspace(self, name: str) -> Workspace: ...

    @abstractmethod
    def workspace_by_name(self, name: str) -> Workspace | None: ...

    @abstractmethod
    def workspace_by_id(self, workspace_id: int) -> Workspace | None: ...

    @abstractmethod
    def list_workspaces(self) -> list[Workspace]: ...

    @abstractmethod
    def create_source(self, workspace_id: int, name: str, source_id: str, write_key: str) -> Source:
        """Raises `Conflict` when the workspace already has a source of that name."""

    @abstractmethod
    def list_sources(self, workspace_id: int) -> list[Source]: ...

    @abstractmethod
    def source_by_write_key(self, write_key: str) -> Source | None: ...

    @abstractmethod
    def set_source_enabled(self, workspace_id: int, source_id: str, enabled: bool) -> Source: ...

    @abstractmethod
    def set_source_identity(
        self, workspace_id: int, source_id: str, *, secret: str | None, require: bool | None
    ) -> Source:
        """Set the identity-verification secret (when not None) and requirement (when not None)."""

    @abstractmethod
    def create_token(
        self, workspace_id: int, token_id: str, token_hash: str, label: str
    ) -> Token: ...

    @abstractmethod
    def token_by_hash(self, token_hash: str) -> Token | None: ...


def migration_scripts(dialect: str) -> list[tuple[int, str]]:
    """(version, SQL) for each migration of a dialect, in order."""
    folder = resources.files("cairn.storage") / "migrations" / dialect
    scripts = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(scripts)


def storage_for(settings: Settings) -> Storage:
    """The backend the settings name (`database_url`, else SQLite in `data_dir`), migrated."""
    return open_storage(
        settings.database,
        cache_mb=settings.sqlite_cache_mb,
        synchronous=settings.sqlite_synchronous,
    )


def open_storage(database: str, *, cache_mb: int = 64, synchronous: str = "FULL") -> Storage:
    """A backend for a database URL: `sqlite:///path` or `postgresql://...`. Migrated on open."""
    storage: Storage
    if database.startswith(("postgresql://", "postgres://")):
        from cairn.storage.postgres import PostgresStorage

        storage = PostgresStorage(database)
    elif database.startswith("sqlite:///"):
        from cairn.storage.sqlite import SQLiteStorage

        storage = SQLiteStorage(
            database.removeprefix("sqlite:///"), cache_mb=cache_mb, synchronous=synchronous
        )
    else:
        raise ValueError(f"unsupported database URL {database!r}: use sqlite:/// or postgresql://")
    storage.migrate()
    return storage
