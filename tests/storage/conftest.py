"""Every storage backend, behind one fixture: the contract suite runs once per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cairn.storage.base import Storage
from cairn.storage.postgres import PostgresStorage
from cairn.storage.sqlite import SQLiteStorage

OpenStorage = Callable[[], Storage]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def open_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStorage]:
    """Opens another, unmigrated handle on this test's database (as a second process would)."""
    if request.param == "sqlite":
        path = tmp_path / "cairn.db"

        def make() -> Storage:
            return SQLiteStorage(path)
    else:
        url: str = request.getfixturevalue("postgres_url")

        def make() -> Storage:
            return PostgresStorage(url)

    opened: list[Storage] = []

    def open_one() -> Storage:
        storage = make()
        opened.append(storage)
        return storage

    yield open_one
    for storage in opened:
        storage.close()


@pytest.fixture
def storage(open_storage: OpenStorage) -> Storage:
    """A migrated, empty store on each backend."""
    store = open_storage()
    store.migrate()
    return store
