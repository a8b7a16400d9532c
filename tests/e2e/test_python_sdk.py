"""Cairn's Python SDK against a real `cairn serve`: a server outage mid-stream, `kill -9` of the
host process with a spool, and the flush at exit. Every event arrives, each exactly once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cairn_analytics import Client
from tests.support.collector import by_message_id
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.e2e]

EVENT = "Item Processed"

# A host program: tracks events [start, stop) with a spool, says how far they are safely on disk,
# then either finishes cleanly ("finish") or idles until it is killed ("idle").
HOST = """
import sys, time
from cairn_analytics import Client

url, write_key, spool, start, stop, ending = sys.argv[1:7]
client = Client(write_key, host=url, spool_dir=spool, upload_interval=0.05, max_backoff=0.5,
                shutdown_timeout=60)
for n in range(int(start), int(stop)):
    client.track("host", "Item Processed", {"n": n})
    if (n + 1) % 250 == 0:
        client.sync_spool()
        print("spooled", n + 1, flush=True)
        time.sleep(0.02)
client.sync_spool()
print("spooled", stop, flush=True)
if ending == "finish":
    client.flush(60)
    client.shutdown()
    print("done", flush=True)
else:
    time.sleep(600)
"""

# A host that tracks and returns without flush or shutdown: the SDK's atexit hook must send.
EXITING_HOST = """
import sys
import cairn_analytics as analytics
analytics.write_key, analytics.host = sys.argv[1], sys.argv[2]
analytics.upload_interval = 30
for n in range(int(sys.argv[3])):
    analytics.track("host", "Item Processed", {"n": n})
"""


def stored_numbers(server: ServerProcess) -> Counter[int]:
    """How many times each `n` is stored (by_message_id fails on a messageId stored twice)."""
    events = by_message_id(server.events(event=EVENT))
    return Counter(int(e["properties"]["n"]) for e in events.values())  # type: ignore[index]


def run_host(
    tmp_path: Path, server: ServerProcess, spool: Path, *args: object
) -> subprocess.Popen[str]:
    script = tmp_path / "host.py"
    script.write_text(HOST)
    command = [sys.executable, str(script), server.url, server.write_key, str(spool),
               *map(str, args)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def spooled_before(host: subprocess.Popen[str], wanted: int) -> int:
    """Read the host's progress until it has `wanted` events on disk; returns that count."""
    assert host.stdout is not None
    for line in host.stdout:
        if line.startswith("spooled") and int(line.split()[1]) >= wanted:
            return int(line.split()[1])
    raise AssertionError("the host ended before spooling enough")


def kill_9(host: subprocess.Popen[str]) -> int:
    """`kill -9` the host; returns the last count it reported as spooled."""
    host.kill()
    assert host.stdout is not None
    last = 0
    for line in host.stdout:
        if line.startswith("spooled"):
            last = int(line.split()[1])
    host.wait()
    return last


def finish(tmp_path: Path, server: ServerProcess, spool: Path, start: int) -> None:
    """A new host process on the same spool: sends what the dead one left, then exits."""
    host = run_host(tmp_path, server, spool, start, start, "finish")
    out, _ = host.communicate(timeout=120)
    assert "done" in out


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_server_outage_mid_stream(any_server: ServerProcess, tmp_path: Path, spooled: bool) -> None:
    errors: list[Exception] = []
    client = Client(
        any_server.write_key,
        host=any_server.url,
        on_error=lambda error, messages: errors.append(error),
        upload_interval=0.05,
        max_backoff=0.5,
        max_retries=30,
        spool_dir=tmp_path / "spool" if spooled else None,
    )
    total = 3000

    def produce() -> None:
        for n in range(total):
            client.track("outage", EVENT, {"n": n})
            if n % 100 == 0:
                time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.5)
    any_server.stop()
    time.sleep(3)
    any_server.start()
    producer.join()
    assert client.flush(60)
    client.shutdown()
    assert errors == []
    assert client.dropped == 0
    assert stored_numbers(any_server) == Counter(range(total))


def test_kill_9_of_the_host_mid_stream_loses_nothing(
    any_server: ServerProcess, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    host = run_host(tmp_path, any_server, spool, 0, 20_000, "idle")
    spooled_before(host, 5_000)
    safe = kill_9(host)
    assert safe < 20_000, "the kill came after the end: make the host slower"
    finish(tmp_path, any_server, spool, 20_000)

    stored = stored_numbers(any_server)
    assert set(range(safe)) <= set(stored), "an event that was on disk did not arrive"
    assert max(stored.values()) == 1
    assert max(stored) < 20_000
    assert list(spool.iterdir()) == [], "the spool is empty once everything is delivered"


def test_kill_9_during_an_outage_loses_nothing(server: ServerProcess, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    server.stop()
    host = run_host(tmp_path, server, spool, 0, 5_000, "idle")
    spooled_before(host, 5_000)
    kill_9(host)
    assert sum(f.stat().st_size for f in spool.rglob("*.jsonl")) > 0
    server.start()
    finish(tmp_path, server, spool, 5_000)
    assert stored_numbers(server) == Counter(range(5_000))


def test_events_are_sent_at_exit(server: ServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "exiting.py"
    script.write_text(EXITING_HOST)
    subprocess.run([sys.executable, str(script), server.write_key, server.url, "2000"],
                   check=True, timeout=60)  # fmt: skip
    assert stored_numbers(server) == Counter(range(2000))


def test_stored_event_keeps_what_the_sdk_sent(server: ServerProcess) -> None:
    client = Client(server.write_key, host=server.url)
    client.identify("u_1", {"plan": "pro"}, message_id="m-identify")
    client.track("u_1", "Order Completed", {"total": 42.5}, context={"ip": "0.0.0.0"})
    assert client.flush(10)
    client.shutdown()
    events: dict[str, Any] = {e["type"]: e for e in server.events(user_id="u_1")}
    assert events["identify"]["messageId"] == "m-identify"
    assert events["identify"]["traits"] == {"plan": "pro"}
    track = events["track"]
    assert track["properties"] == {"total": 42.5}
    assert track["context"]["library"]["name"] == "cairn-analytics-python"
    assert track["context"]["ip"] == "0.0.0.0"
    assert track["channel"] == "server"
