"""A real HTTP receiver on loopback for webhook tests: records every request, answers from a
script (a list of status codes, delays and headers), and dedupes by Idempotency-Key as a careful
receiver would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

__all__ = ["Answer", "Received", "Receiver", "receiving"]


@dataclass
class Answer:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: dict[str, list[Answer]] = {}  # path -> answers in turn (last one repeats)
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver.arrived:
                    receiver.requests.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                        )
                    )
                    answers = receiver.script.get(self.path, [])
                    answer = answers.pop(0) if len(answers) > 1 else (answers or [Answer()])[0]
                    receiver.arrived.notify_all()
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, path: str, *answers: Answer) -> None:
        self.script[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def unique(self, path: str) -> dict[str, Received]:
        """Requests to `path` deduplicated by Idempotency-Key (the first of each)."""
        seen: dict[str, Received] = {}
        for r in self.at(path):
            seen.setdefault(r.headers.get("idempotency-key", ""), r)
        return seen

    def wait_for(self, path: str, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len([r for r in self.requests if r.path == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{path}: {len(self.at_unlocked(path))} of {count} requests arrived"
                    )
                self.arrived.wait(left)
        return self.at(path)

    def at_unlocked(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
