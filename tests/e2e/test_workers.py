"""`cairn serve --workers N`: several collector processes over one database.

Events from every process are stored exactly once, in one monotonic sequence; a messageId sent to
two processes is stored once; a worker killed with `kill -9` loses nothing it answered 200 and is
replaced; the pipeline applies each event once, whichever process committed it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cairn.storage.base import open_storage
from tests.support.collector import basic, by_message_id, track
from tests.support.server import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

WORKERS = 2


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def workers_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    server = ServerProcess(
        data_dir=tmp_path / "data",
        database_url=database_url,
        env={"CAIRN_WORKERS": str(WORKERS)},
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _database(server: ServerProcess) -> str:
    return server.database_url or f"sqlite:///{server.data_dir / 'cairn.db'}"


def _worker_pids(server: ServerProcess) -> list[int]:
    return [int(m.group(1)) for line in server.output
            if (m := re.search(r"Started server process \[(\d+)\]", line))]  # fmt: skip


def _message(message_id: str) -> dict[str, object]:
    return track(messageId=message_id, userId=f"u-{message_id[-1]}",
                 timestamp="2024-07-01T08:00:00.000Z")  # fmt: skip


@dataclass
class Stream:
    """One client thread: batches on fresh connections (so the kernel spreads them over the
    workers), recording what was sent and what was answered 200."""

    name: str
    sent: list[list[str]] = field(default_factory=list)
    answered: list[list[str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def send(self, server: ServerProcess, ids: list[str]) -> bool:
        self.sent.append(ids)
        try:
            answer = httpx.post(
                f"{server.url}/v1/batch",
                json={"batch": [_message(i) for i in ids]},
                headers={**basic(server.write_key), "Connection": "close"},
                timeout=10,
            )
        except httpx.TransportError:
            return False  # the worker holding this connection was killed: never acknowledged
        if answer.status_code == 200 and answer.json() == {"success": True}:
            self.answered.append(ids)
        elif answer.status_code != 429:
            self.unexpected.append(f"{answer.status_code} {answer.text[:200]}")
        return True

    def run(self, server: ServerProcess, stop: threading.Event, size: int = 20) -> None:
        while not stop.is_set():
            self.send(server, [f"{self.name}-{len(self.sent)}-{m}" for m in range(size)])


def _log(server: ServerProcess) -> list[tuple[int, str]]:
    storage = open_storage(_database(server))
    try:
        entries = []
        position = 0
        while batch := storage.read_log(position, 1000):
            entries += [(e.seq, e.message_id) for e in batch]
            position = batch[-1].seq
        return entries
    finally:
        storage.close()


def test_every_process_stores_once_in_one_sequence(workers_server: ServerProcess) -> None:
    server = workers_server
    assert len(_worker_pids(server)) == WORKERS
    # Each batch goes out twice, on two connections: the same messageIds reach both processes.
    streams = [Stream(f"s{n}") for n in range(4)]

    def run(stream: Stream) -> None:
        for b in range(15):
            ids = [f"{stream.name}-{b}-{m}" for m in range(20)]
            stream.send(server, ids)
            stream.send(server, ids)

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [u for s in streams for u in s.unexpected] == []
    sent = {i for s in streams for batch in s.sent for i in batch}
    assert len(sent) == 4 * 15 * 20

    log = _log(server)
    assert [seq for seq, _ in log] == sorted({seq for seq, _ in log}), "one increasing sequence"
    assert sorted(m for _, m in log) == sorted(sent), "every messageId exactly once"
    assert set(by_message_id(server.events())) == sent  # by_message_id fails on a duplicate

    # Both processes took part: each reports its own writer counters.
    seen: dict[int, int] = {}
    for _ in range(40):
        answer = httpx.get(f"{server.url}/api/v1/stats", headers={
            "Authorization": f"Bearer {server.token}", "Connection": "close"})  # fmt: skip
        writer = answer.json()["writer"]
        seen[writer["process"]] = writer["events"] + writer["duplicates"]
        if len(seen) == WORKERS:
            break
    assert sorted(seen) == sorted(_worker_pids(server))
    assert all(count > 0 for count in seen.values()), seen


def test_a_killed_worker_loses_nothing_and_is_replaced(workers_server: ServerProcess) -> None:
    server = workers_server
    victim = _worker_pids(server)[0]
    stop = threading.Event()
    streams = [Stream(f"k{n}") for n in range(4)]
    threads = [threading.Thread(target=s.run, args=(server, stop)) for s in streams]
    for thread in threads:
        thread.start()
    wait_for(lambda: sum(len(s.answered) for s in streams) >= 40, timeout=30)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(_worker_pids(server)) > WORKERS, timeout=30)  # a replacement started
    time.sleep(1.0)  # keep streaming into the new set of workers
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert [u for s in streams for u in s.unexpected] == []
    acknowledged = {i for s in streams for batch in s.answered for i in batch}
    stored = [m for _, m in _log(server)]
    assert len(stored) == len(set(stored)), "no messageId stored twice"
    assert acknowledged <= set(stored), "every event answered 200 is stored"
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200

    # Retrying what was never answered stores the rest, still once each.
    retry = Stream("retry")
    for stream in streams:
        for batch in stream.sent:
            if batch not in stream.answered:
                assert retry.send(server, batch)
    assert retry.unexpected == []
    sent = {i for s in streams for batch in s.sent for i in batch}
    stored = [m for _, m in _log(server)]
    assert sorted(stored) == sorted(sent)


def test_the_pipeline_applies_each_event_once(workers_server: ServerProcess) -> None:
    server = workers_server
    stream = Stream("p")
    for b in range(20):
        stream.send(server, [f"p-{b}-{m}" for m in range(10)])
    assert len(stream.answered) == 20
    total = len(_log(server))

    def caught_up() -> bool:
        with server.api() as api:
            status = api.get("/api/v1/pipeline").json()
        return bool(status["cursor"] == status["last_seq"] == total)

    wait_for(caught_up, timeout=30)
    storage = open_storage(_database(server))
    try:
        rows = storage._rows("SELECT count(*), count(DISTINCT seq) FROM person_events")  # type: ignore[attr-defined]
    finally:
        storage.close()
    assert tuple(rows[0]) == (total, total)
