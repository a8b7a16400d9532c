"""Cross-origin scripts may read Retry-After on collector answers (cairn.js backs off by it)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e


def test_collector_answers_expose_retry_after(server: ServerProcess) -> None:
    answer = httpx.post(
        server.url + "/v1/batch",
        content=b'{"batch": [], "writeKey": "nope"}',
        headers={"origin": "https://shop.example", "content-type": "text/plain"},
    )
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"
    assert answer.headers["access-control-expose-headers"] == "Retry-After"
