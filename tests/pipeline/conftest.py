"""The pipeline's tests run on every backend, through `Log` (tests/support/pipeline.py)."""

from __future__ import annotations

import pytest

from cairn.storage.sql import SQLStorage
from tests.storage.conftest import OpenStorage, open_storage, storage  # noqa: F401
from tests.support.pipeline import Log


@pytest.fixture
def log(storage: SQLStorage) -> Log:  # noqa: F811
    return Log(storage)


@pytest.fixture
def second(open_storage: OpenStorage) -> SQLStorage:  # noqa: F811
    """Another handle on the same database, as a second worker process would have."""
    other = open_storage()
    assert isinstance(other, SQLStorage)
    return other
