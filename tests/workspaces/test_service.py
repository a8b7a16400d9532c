from __future__ import annotations

from pathlib import Path

import pytest

from cairn.errors import InvalidToken, NotFound, SourceDisabled, UnknownWriteKey
from cairn.storage.sqlite import SQLiteStorage
from cairn.workspaces import SourceCache, authenticate, bootstrap, create_token, resolve_workspace


@pytest.fixture
def storage(sqlite_storage: SQLiteStorage) -> SQLiteStorage:
    return sqlite_storage


def test_bootstrap_runs_once(storage: SQLiteStorage) -> None:
    first = bootstrap(storage)
    assert first is not None
    assert first.workspace.name == "default"
    assert authenticate(storage, first.token).workspace_id == first.workspace.id
    assert bootstrap(storage) is None


def test_tokens_are_stored_hashed(storage: SQLiteStorage, tmp_path: Path) -> None:
    first = bootstrap(storage)
    assert first is not None
    assert first.token.encode() not in (tmp_path / "cairn.db").read_bytes()


def test_unknown_or_missing_token(storage: SQLiteStorage) -> None:
    bootstrap(storage)
    with pytest.raises(InvalidToken):
        authenticate(storage, "cairn_nope")
    with pytest.raises(InvalidToken):
        authenticate(storage, None)


def test_tokens_are_per_workspace(storage: SQLiteStorage) -> None:
    bootstrap(storage)
    other = storage.create_workspace("other")
    _, secret = create_token(storage, other)
    assert authenticate(storage, secret).workspace_id == other.id
    with pytest.raises(NotFound):
        resolve_workspace(storage, "missing")


def test_source_cache_checks_and_expires(storage: SQLiteStorage) -> None:
    first = bootstrap(storage)
    assert first is not None
    cache = SourceCache(storage, ttl=0.0)
    key = first.source.write_key
    assert SourceCache.check(key, cache.load(key)).id == first.source.id
    storage.set_source_enabled(first.workspace.id, first.source.id, False)
    with pytest.raises(SourceDisabled):
        SourceCache.check(key, cache.load(key))
    with pytest.raises(UnknownWriteKey):
        SourceCache.check("nope", cache.load("nope"))
    with pytest.raises(UnknownWriteKey):
        SourceCache.check(None, None)
