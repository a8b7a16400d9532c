"""Shared fixtures: a temporary SQLite storage, a PostgreSQL database, a real server process."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cairn.storage.sqlite import SQLiteStorage
from tests.support.server import ServerProcess

POSTGRES_ADMIN_URL = os.environ.get(
    "CAIRN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_reachable() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    """A migrated SQLite storage in a temporary file, closed afterwards."""
    store = SQLiteStorage(tmp_path / "cairn.db")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL; skipped locally without one, fatal in CI."""
    if not _postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"cairn_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `cairn serve` on SQLite in a temporary data dir."""
    proc = ServerProcess(data_dir=tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[ServerProcess]:
    """A real `cairn serve` on a fresh PostgreSQL database."""
    proc = ServerProcess(data_dir=tmp_path / "data", database_url=postgres_url).start()
    try:
        yield proc
    finally:
        proc.stop()
