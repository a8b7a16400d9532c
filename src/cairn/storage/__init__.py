"""Storage behind one small interface: `Storage` in `base`, one module per engine."""

from cairn.storage.base import (
    EventQuery,
    LogEntry,
    RejectedEntry,
    Source,
    Storage,
    Token,
    Workspace,
    open_storage,
)

__all__ = [
    "EventQuery",
    "LogEntry",
    "RejectedEntry",
    "Source",
    "Storage",
    "Token",
    "Workspace",
    "open_storage",
]
