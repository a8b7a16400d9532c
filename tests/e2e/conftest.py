"""End-to-end fixtures: one real `cairn serve` per test, on each storage backend."""

from __future__ import annotations

import pytest

from tests.support.server import ServerProcess

BACKENDS = [
    pytest.param("server", id="sqlite"),
    pytest.param("pg_server", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def any_server(request: pytest.FixtureRequest) -> ServerProcess:
    """`cairn serve` on SQLite, then on PostgreSQL: every e2e test must pass on both."""
    server: ServerProcess = request.getfixturevalue(request.param)
    return server
