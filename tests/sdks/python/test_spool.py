"""The disk spool: segments, limits, torn lines, leftovers of dead clients, outages."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cairn_analytics import Client, EventsDropped
from cairn_analytics.spool import Spool
from cairn_analytics.transport import Response
from tests.sdks.python.conftest import Errors, FakeTransport, unreachable

MakeClient = Callable[..., Client]


def lines(*numbers: int) -> list[bytes]:
    return [json.dumps({"n": n}).encode() for n in numbers]


def drain(spool: Spool) -> list[int]:
    seen = []
    while (batch := spool.next_batch(100, 500_000)) is not None:
        seen += [json.loads(line)["n"] for line in batch.lines]
        spool.ack(batch)
    return seen


def test_lines_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    for n in range(10):
        spool.append(lines(n))
    assert len(list(spool.directory.glob("*.jsonl"))) > 1
    assert drain(spool) == list(range(10))
    assert spool.size == 0
    spool.close()
    assert list(tmp_path.iterdir()) == [], "an empty spool leaves nothing behind"


def test_a_batch_respects_count_and_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(lines(*range(50)))
    batch = spool.next_batch(20, 500_000)
    assert batch is not None
    assert len(batch.lines) == 20
    small = spool.next_batch(100, 64 + 30)
    assert small is not None
    assert 1 <= len(small.lines) <= 3
    spool.close()


def test_a_full_spool_refuses_the_newest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    assert spool.append(lines(*range(20))) < 20
    accepted = drain(spool)
    assert accepted == list(range(len(accepted)))
    spool.close()


def test_undelivered_segments_are_adopted_by_the_next_client(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=40)
    first.append(lines(1, 2, 3, 4))
    first.close()  # exits with events left: they stay on disk
    second = Spool(tmp_path, max_bytes=1 << 20)
    second.append(lines(5))
    assert second.adopt() >= 1
    assert drain(second) == [1, 2, 3, 4, 5]
    second.close()
    assert list(tmp_path.iterdir()) == []


def test_a_live_clients_spool_is_not_adopted(tmp_path: Path) -> None:
    live = Spool(tmp_path, max_bytes=1 << 20)
    live.append(lines(1))
    other = Spool(tmp_path, max_bytes=1 << 20)
    assert other.adopt() == 0
    other.close()
    live.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    dead = tmp_path / "123-dead"
    dead.mkdir()
    (dead / "00000001.jsonl").write_bytes(b'{"n":1}\n{"n":2}\n{"n":')
    (dead / "lock").touch()
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.adopt()
    assert drain(spool) == [1, 2]
    assert not dead.exists()
    spool.close()


def test_a_locked_directory_is_left_alone(tmp_path: Path) -> None:
    busy = tmp_path / "456-busy"
    busy.mkdir()
    (busy / "00000001.jsonl").write_bytes(b'{"n":1}\n')
    fd = os.open(busy / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        spool = Spool(tmp_path, max_bytes=1 << 20)
        assert spool.adopt() == 0
        spool.close()
    finally:
        os.close(fd)


def test_an_outage_loses_nothing(
    make_client: MakeClient, transport: FakeTransport, tmp_path: Path
) -> None:
    down = {"until": time.monotonic() + 1.0}
    transport.answer_with = lambda post: (
        unreachable() if time.monotonic() < down["until"] else Response(200)
    )
    client = make_client(spool_dir=tmp_path, max_retries=0, max_backoff=0.1)
    for n in range(5000):
        client.track("u", "E", {"n": n})
    assert client.sync_spool(10)
    assert client.stats().spooled_bytes > 0
    assert client.flush(20)
    delivered = {m["properties"]["n"] for m in transport.delivered()}
    assert delivered == set(range(5000))
    assert client.stats().spooled_bytes == 0


def test_configuration_errors_keep_the_spool(
    make_client: MakeClient, transport: FakeTransport, errors: Errors, tmp_path: Path
) -> None:
    transport.answers = [Response(401), Response(404)]
    client = make_client(spool_dir=tmp_path, max_backoff=0.05)
    client.track("u", "E")
    assert client.flush(10)
    assert len(transport.posts) == 3
    assert client.stats().delivered == 1
    assert errors.seen == []


def test_events_left_at_shutdown_go_with_the_next_client(
    make_client: MakeClient, transport: FakeTransport, tmp_path: Path
) -> None:
    transport.answer_with = lambda post: Response(503)
    first = make_client(spool_dir=tmp_path, max_backoff=0.05)
    for n in range(100):
        first.track("u", "E", {"n": n})
    first.shutdown(timeout=0.3)
    assert first.dropped == 0
    tried = {m["messageId"] for m in transport.attempted()}
    assert tried
    assert transport.delivered() == []
    transport.answer_with = None
    second = make_client(spool_dir=tmp_path)
    assert second.flush(10)
    delivered = transport.delivered()
    assert sorted(m["properties"]["n"] for m in delivered) == list(range(100))
    assert tried <= {m["messageId"] for m in delivered}, "the same ids: the server can dedupe"


def test_a_full_spool_drops_and_reports(
    make_client: MakeClient, transport: FakeTransport, errors: Errors, tmp_path: Path
) -> None:
    transport.gate.clear()
    client = make_client(spool_dir=tmp_path, spool_max_bytes=10_000)
    for n in range(1000):
        client.track("u", "E", {"n": n})
    assert client.sync_spool(10)
    assert client.dropped > 0
    transport.gate.set()
    assert client.flush(10)
    client.shutdown()
    assert sum(e.count for e, _ in errors.of(EventsDropped) if isinstance(e, EventsDropped)) == (
        client.dropped
    )


def test_a_failed_write_never_tears_a_good_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(lines(1))
    write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        write(fd, bytes(data[:5]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        spool.append(lines(2))
    monkeypatch.undo()
    spool.append(lines(3))
    assert drain(spool) == [1, 3]
    assert spool.size == 0
    spool.close()
