"""A transport that records what the SDK posts and answers from a script, so the SDK is tested
without a network (the seam is `Client(transport=...)`)."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from cairn_analytics import Client
from cairn_analytics.transport import Response, TransportError

Answer = Response | Exception


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0  # 0: no answer (a network error)

    @property
    def batch(self) -> list[dict[str, Any]]:
        return list(self.body["batch"])


@dataclass
class FakeTransport:
    """Answers each post with the next scripted answer (then 200); `gate` holds posts back."""

    answers: list[Answer] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    answer_with: Callable[[Post], Answer] | None = None

    def __post_init__(self) -> None:
        self.gate.set()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        self.gate.wait(30)
        raw = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
        post = Post(path, headers, json.loads(raw))
        self.posts.append(post)
        answer = self.answers.pop(0) if self.answers else None
        if answer is None and self.answer_with is not None:
            answer = self.answer_with(post)
        if isinstance(answer, Exception):
            raise answer
        answer = answer or Response(200, b'{"success":true}')
        post.status = answer.status
        return answer

    def close(self) -> None:
        pass

    def delivered(self) -> list[dict[str, Any]]:
        """Messages of every post answered 200, in order."""
        return [m for p in self.posts if p.status == 200 for m in p.batch]

    def attempted(self) -> list[dict[str, Any]]:
        """Messages of every post, whatever the answer."""
        return [m for p in self.posts for m in p.batch]


@dataclass
class Errors:
    seen: list[tuple[Exception, list[dict[str, Any]]]] = field(default_factory=list)

    def __call__(self, error: Exception, messages: list[dict[str, Any]]) -> None:
        self.seen.append((error, messages))

    def of(self, kind: type[Exception]) -> list[tuple[Exception, list[dict[str, Any]]]]:
        return [(e, m) for e, m in self.seen if isinstance(e, kind)]


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def errors() -> Errors:
    return Errors()


@pytest.fixture
def make_client(transport: FakeTransport, errors: Errors) -> Iterator[Callable[..., Client]]:
    """A client on the fake transport with short intervals; shut down after the test."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        settings: dict[str, Any] = {
            "write_key": "wk",
            "transport": transport,
            "on_error": errors,
            "upload_interval": 0.05,
            "max_backoff": 0.05,
            "shutdown_timeout": 5,
        }
        client = Client(**{**settings, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(timeout=2)


def unreachable() -> TransportError:
    return TransportError("connection refused")
