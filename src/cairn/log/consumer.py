"""A named reader of the log with a committed cursor. Replays are safe: consumers are idempotent."""

from __future__ import annotations

from cairn.storage.base import LogEntry, Storage

__all__ = ["Consumer"]


class Consumer:
    """Reads events after its committed position; `commit` moves the position forward.

    After a crash the consumer resumes from the last commit, so events between that commit and the
    crash are delivered again: handlers must be idempotent by `message_id` (they are, by design).
    """

    def __init__(self, storage: Storage, name: str) -> None:
        self._storage = storage
        self.name = name
        self.position = storage.get_cursor(name)

    def poll(self, limit: int = 1000) -> list[LogEntry]:
        return self._storage.read_log(self.position, limit)

    def commit(self, position: int) -> None:
        if position < self.position:
            raise ValueError(f"cursor {self.name} cannot move back from {self.position}")
        self._storage.commit_cursor(self.name, position)
        self.position = position

    def lag(self) -> int:
        """Events appended after the committed position (an upper bound: seq has gaps)."""
        return max(self._storage.last_seq() - self.position, 0)
