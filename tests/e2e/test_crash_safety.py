"""`kill -9` while clients stream batches: every event answered 200 survives, exactly once
(DESIGN.md, "Accept fast, never lose"), and retrying the unanswered batches loses nothing."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.collector import basic, by_message_id, track
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e


@dataclass
class Stream:
    """One client thread's record: every batch it sent, and which of them were answered 200."""

    name: str
    sent: list[list[str]] = field(default_factory=list)
    answered: list[list[str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def run(self, server: ServerProcess, stop: threading.Event, size: int = 50) -> None:
        with httpx.Client(base_url=server.url, timeout=10, headers=basic(server.write_key)) as http:
            while not stop.is_set():
                ids = [f"{self.name}-{len(self.sent)}-{m}" for m in range(size)]
                self.sent.append(ids)
                try:
                    answer = http.post("/v1/batch", json={"batch": [_message(i) for i in ids]})
                except httpx.TransportError:
                    return  # the server is gone; these ids were never acknowledged
                if answer.status_code == 200 and answer.json() == {"success": True}:
                    self.answered.append(ids)
                elif answer.status_code != 429:
                    self.unexpected.append(f"{answer.status_code} {answer.text[:200]}")


def _message(message_id: str) -> dict[str, object]:
    return track(messageId=message_id, timestamp="2024-07-01T08:00:00.000Z",
                 properties={"payload": "x" * 200})  # fmt: skip


def test_kill_9_loses_no_acknowledged_event(any_server: ServerProcess) -> None:
    stop = threading.Event()
    streams = [Stream(f"s{n}") for n in range(3)]
    threads = [threading.Thread(target=s.run, args=(any_server, stop)) for s in streams]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while sum(len(s.answered) for s in streams) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    any_server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert [u for s in streams for u in s.unexpected] == []
    acknowledged = {i for s in streams for batch in s.answered for i in batch}
    assert len(acknowledged) >= 30 * 50, "the clients did not get going before the kill"
    any_server.start()
    stored = by_message_id(any_server.events())  # fails on any messageId stored twice
    assert acknowledged <= set(stored)
    sent = {i for s in streams for batch in s.sent for i in batch}
    assert set(stored) <= sent

    # A client retries what was never answered; nothing is lost and nothing doubles.
    with httpx.Client(base_url=any_server.url, timeout=30,
                      headers=basic(any_server.write_key)) as http:  # fmt: skip
        for stream in streams:
            for batch in stream.sent:
                if batch not in stream.answered:
                    answer = http.post("/v1/batch", json={"batch": [_message(i) for i in batch]})
                    assert answer.json() == {"success": True}
    assert set(by_message_id(any_server.events())) == sent
