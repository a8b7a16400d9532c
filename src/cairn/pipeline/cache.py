"""What the pipeline's last batches read and wrote, kept for its next batches.

Most events come from people the pipeline saw a moment ago: their identifiers and persons need not
be read back from the database. The cache is valid while the cursor's version is the one its last
batch committed: every other write to derived state (another worker's batch, an unmerge) bumps the
version, and the cache is then dropped whole. It holds rows as stored, never the objects a batch
changes, so a batch that fails leaves it as it was.

Only persons that are no one's merged part (`merged_into` NULL) are kept, and an identifier is used
only while its person is kept: a merge moves identifiers the batch never loaded, and their cached
person is then gone, so they are read again.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

__all__ = ["StateCache"]

IdentifierKey = tuple[int, str, str]  # workspace, kind, value


class StateCache:
    """Identifier rows (id, person_id, via_id) and person rows (`PERSON_COLUMNS`), at most
    `max_persons` and twice as many identifiers; past that the least recently used half goes."""

    def __init__(self, max_persons: int = 200_000) -> None:
        self.max_persons = max_persons
        self.version: int | None = None
        self._identifiers: dict[IdentifierKey, tuple[int, int, int | None]] = {}
        self._persons: dict[int, tuple[Any, ...]] = {}
        self.hits = 0
        self.misses = 0

    def valid_for(self, version: int) -> bool:
        """True if nothing but this cache's batches changed derived state; else it is emptied."""
        if self.version == version:
            return True
        self.clear()
        return False

    def clear(self) -> None:
        self.version = None
        self._identifiers.clear()
        self._persons.clear()

    def identifier(self, key: IdentifierKey) -> tuple[int, int, int | None] | None:
        found = self._identifiers.get(key)
        if found is None or found[1] not in self._persons:
            self.misses += 1
            return None
        self.hits += 1
        return found

    def person(self, person_id: int) -> tuple[Any, ...] | None:
        return self._persons.get(person_id)

    def keep(
        self,
        version: int,
        identifiers: list[tuple[IdentifierKey, tuple[int, int, int | None]]],
        persons: list[tuple[Any, ...]],
        merged: list[int],
    ) -> None:
        """A batch committed at `version`: its identifiers and persons as now stored (`merged`:
        persons that are now part of another)."""
        self.version = version
        ids, rows = self._identifiers, self._persons
        for pid in merged:
            rows.pop(pid, None)
        for row in persons:
            rows.pop(row[0], None)  # re-inserted last: the most recently used
            rows[row[0]] = row
        for key, value in identifiers:
            ids.pop(key, None)
            ids[key] = value
        if len(rows) > self.max_persons:
            self._persons = dict(islice(rows.items(), len(rows) // 2, None))
        if len(ids) > 2 * self.max_persons:
            self._identifiers = dict(islice(ids.items(), len(ids) // 2, None))
