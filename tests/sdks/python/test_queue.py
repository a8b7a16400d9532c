"""The memory queue: overflow policy, concurrent callers, bursts, shutdown and fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from cairn_analytics import Client, EventsDropped
from cairn_analytics.transport import Response
from tests.sdks.python.conftest import Errors, FakeTransport

MakeClient = Callable[..., Client]


def test_a_full_queue_refuses_new_events_and_counts_them(
    make_client: MakeClient, transport: FakeTransport, errors: Errors
) -> None:
    transport.gate.clear()  # the server hangs: nothing leaves the queue
    client = make_client(max_queue_size=100, upload_size=10)
    results = [client.track("u", "E", {"n": n}) for n in range(1000)]
    assert results.count(False) >= 1000 - 100 - 10  # the sender holds one batch in hand
    assert client.dropped == results.count(False)
    transport.gate.set()
    assert client.flush(10)
    kept = [m["properties"]["n"] for m in transport.delivered()]
    assert kept == list(range(len(kept))), "the oldest events are the ones kept"
    reports = errors.of(EventsDropped)
    assert 1 <= len(reports) <= 3, "drops are reported in bulk, not once per event"
    assert sum(e.count for e, _ in reports if isinstance(e, EventsDropped)) == client.dropped


def test_concurrent_callers_lose_nothing(make_client: MakeClient, transport: FakeTransport) -> None:
    client = make_client()

    def call(worker: int) -> None:
        for n in range(5000):
            client.track(f"u{worker}", "E", {"n": n})

    threads = [threading.Thread(target=call, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(30)
    delivered = transport.delivered()
    assert len(delivered) == 40_000
    assert len({m["messageId"] for m in delivered}) == 40_000
    for worker in range(8):
        mine = [m["properties"]["n"] for m in delivered if m["userId"] == f"u{worker}"]
        assert mine == list(range(5000)), "each thread's events stay in order"


def test_a_100k_burst_fits_the_default_queue(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    client = make_client()
    accepted = sum(client.track("u", "E", {"n": n}) for n in range(100_000))
    assert accepted == 100_000
    assert client.flush(60)
    assert client.stats().delivered == 100_000
    assert client.dropped == 0


def test_shutdown_sends_what_is_queued_then_refuses(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    client = make_client(upload_interval=60)
    for n in range(10):
        client.track("u", "E", {"n": n})
    client.shutdown()
    assert len(transport.delivered()) == 10
    assert client.track("u", "E") is False
    assert client.dropped == 1


def test_shutdown_gives_up_after_its_timeout(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    transport.answer_with = lambda post: Response(503)
    client = make_client(max_backoff=0.2, max_retries=1000)
    for n in range(10):
        client.track("u", "E", {"n": n})
    client.shutdown(timeout=0.5)
    assert client.dropped == 10


def test_fork_gives_the_child_an_empty_queue(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    transport.gate.clear()
    client = make_client(upload_size=1)
    for n in range(5):
        client.track("parent", "E", {"n": n})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's five events are not its to send
        try:
            transport.posts.clear()
            transport.gate.set()
            for n in range(3):
                client.track("child", "E", {"n": n})
            client.flush(10)
            users = ",".join(m["userId"] for m in transport.delivered())
            os.write(write, users.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_saw = pipe.read()
    os.waitpid(pid, 0)
    assert child_saw == "child,child,child"
    transport.gate.set()
    assert client.flush(10)
    assert [m["userId"] for m in transport.delivered()] == ["parent"] * 5
