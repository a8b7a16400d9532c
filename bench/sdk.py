"""The Python SDK benchmark: cairn-analytics beside Segment's analytics-python, in one run.

`.venv/bin/python bench/sdk.py` (or `make bench-sdk`) prints a table. Each row is one SDK setup
driven in a fresh subprocess: a burst of `--events` track() calls as fast as one thread can make
them, then a flush until everything is delivered. The receiver is a small HTTP sink in its own
process (standard library, keep-alive, inflates gzip, counts the messages it is sent), so the
host's numbers hold only the SDK's own work.

Columns: `calls/s` is track() calls per second in the calling thread during the burst (the SDK's
threads run meanwhile, as in an application); `dropped` is how many of the burst the SDK refused;
`delivered` is what the sink counted; `CPU µs/event` is the host process's CPU time (every thread)
from the first call until all was delivered, divided by the events delivered; `drain s` is the time
from the end of the burst until the flush returned.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from servers import free_port, start_cairn

_BENCH = Path(__file__).parent
_SPOOLS = _BENCH / ".data" / "sdk-spool"

# name -> (library, options). Each library's defaults unless the name says otherwise.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "analytics-python (queue 10,000)": ("segment", {}),
    "analytics-python, queue 100,000": ("segment", {"max_queue_size": 100_000}),
    "cairn-analytics, memory": ("cairn", {}),
    "cairn-analytics, memory, no gzip": ("cairn", {"gzip": False}),
    "cairn-analytics, spool": ("cairn", {"spool_dir": True}),
    "cairn-analytics, spool + fsync": ("cairn", {"spool_dir": True, "spool_fsync": True}),
}

PROPERTIES = {"order_id": "o_1", "total": 42.5, "currency": "USD", "coupon": None, "items": 3}


# -- the receiver -------------------------------------------------------------------------------


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall
    received = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        _Sink.received += len(json.loads(body).get("batch", []))
        self._answer(b'{"success":true}')

    def do_GET(self) -> None:
        self._answer(json.dumps({"received": _Sink.received}).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_sink(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Sink).serve_forever()


def sink_count(url: str) -> int:
    with urllib.request.urlopen(url + "/count", timeout=10) as answer:
        return int(json.loads(answer.read())["received"])


@dataclass
class Receiver:
    """Where the SDKs send: the sink, or a real `cairn serve` (`--receiver cairn`)."""

    url: str
    write_key: str
    stop: Callable[[], object]
    token: str = ""

    def count(self) -> int:
        if not self.token:
            return sink_count(self.url)
        request = urllib.request.Request(
            self.url + "/api/v1/stats", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return int(json.loads(answer.read())["events"])


def start_sink() -> Receiver:
    port = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "sink", "--port", str(port)])
    receiver = Receiver(
        f"http://127.0.0.1:{port}", "bench-key", lambda: (sink.terminate(), sink.wait())
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            receiver.count()
            return receiver
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_cairn_receiver() -> Receiver:
    data = _BENCH / ".data" / "sdk-cairn"
    shutil.rmtree(data, ignore_errors=True)
    server = start_cairn("cairn-sdk-receiver", data_dir=data)
    banner = server.log.read_text()
    write_key = re.search(r"write key \([^)]*\):\s+(\S+)", banner)
    token = re.search(r"admin token \(shown once\):\s+(\S+)", banner)
    if write_key is None or token is None:
        raise RuntimeError(f"no write key or admin token in the banner:\n{banner}")
    return Receiver(server.url, write_key.group(1), server.stop, token.group(1))


# -- one setup, in its own process --------------------------------------------------------------


def make_client(library: str, options: dict[str, Any], url: str, key: str) -> tuple[Any, Any]:
    """The client and its track function, returning True when the call was accepted."""
    if library == "segment":
        from segment.analytics import Client as SegmentClient

        segment = SegmentClient(key, host=url, **options)
        return segment, lambda *args: segment.track(*args)[0]
    from cairn_analytics import Client

    if options.get("spool_dir"):
        shutil.rmtree(_SPOOLS, ignore_errors=True)
        options = {**options, "spool_dir": _SPOOLS}
    cairn = Client(key, host=url, **options)
    return cairn, cairn.track


def run_case(name: str, url: str, key: str, events: int) -> dict[str, float]:
    library, options = CASES[name]
    client, track = make_client(library, options, url, key)
    track("warm-up", "Bench Started", {})  # the first connection is not part of the burst
    client.flush()
    print("ready", flush=True)
    sys.stdin.readline()  # the driver counts what the receiver holds, then says go
    cpu_start, start = time.process_time(), time.perf_counter()
    accepted = 0
    for n in range(events):
        accepted += bool(track(f"user_{n % 1000}", "Order Completed", PROPERTIES))
    burst_end = time.perf_counter()
    client.flush()
    drained, cpu_end = time.perf_counter(), time.process_time()
    client.shutdown()
    return {
        "calls_per_s": events / (burst_end - start),
        "dropped": events - accepted,
        "cpu_s": cpu_end - cpu_start,
        "drain_s": drained - burst_end,
    }


# -- the driver ---------------------------------------------------------------------------------


def measure(name: str, receiver: Receiver, events: int) -> dict[str, float]:
    command = [sys.executable, __file__, "case", name, "--url", receiver.url,
               "--key", receiver.write_key, "--events", str(events)]  # fmt: skip
    case = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert case.stdin is not None
    assert case.stdout is not None
    assert case.stdout.readline().strip() == "ready"
    before = receiver.count()
    case.stdin.write("go\n")
    case.stdin.flush()
    out, err = case.communicate(timeout=600)  # analytics-python logs each refused call there
    if case.returncode:
        raise RuntimeError(f"{name} failed:\n{err[-3000:]}")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    result["delivered"] = receiver.count() - before
    result["cpu_us"] = result["cpu_s"] * 1e6 / max(result["delivered"], 1)
    return result


def print_table(rows: list[tuple[str, list[dict[str, float]]]], markdown: bool) -> None:
    headers = ["SDK", "calls/s", "dropped", "delivered", "CPU µs/event", "drain s"]
    lines = [headers]
    for name, runs in rows:
        middle = sorted(runs, key=lambda r: r["calls_per_s"])[len(runs) // 2]
        lines.append([
            name,
            f"{statistics.median(r['calls_per_s'] for r in runs):,.0f}",
            f"{middle['dropped']:,.0f}",
            f"{middle['delivered']:,.0f}",
            f"{statistics.median(r['cpu_us'] for r in runs):.1f}",
            f"{statistics.median(r['drain_s'] for r in runs):.2f}",
        ])  # fmt: skip
    if markdown:
        rule = ["---"] + ["---:"] * (len(headers) - 1)
        print("\n".join("| " + " | ".join(line) + " |" for line in [headers, rule, *lines[1:]]))
        return
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    for line in lines:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths, strict=True))))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="table", choices=["table", "case", "sink"])
    parser.add_argument("name", nargs="?", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--key", default="bench-key")
    parser.add_argument(
        "--receiver",
        default="sink",
        choices=["sink", "cairn"],
        help="the stdlib sink (default) or a real cairn serve on SQLite",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (the median is shown)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    options = parser.parse_args()
    if options.mode == "sink":
        serve_sink(options.port)
    elif options.mode == "case":
        print(json.dumps(run_case(options.name, options.url, options.key, options.events)))
    else:
        run_table(options)


def run_table(options: argparse.Namespace) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; receiver: {options.receiver}; a burst of "
          f"{options.events:,} track() calls per run, median of {options.repeat} runs",
          flush=True)  # fmt: skip
    receiver = start_cairn_receiver() if options.receiver == "cairn" else start_sink()
    try:
        rows = []
        for name in CASES:
            runs = [measure(name, receiver, options.events) for _ in range(options.repeat)]
            rows.append((name, runs))
        print_table(rows, options.markdown)
    finally:
        receiver.stop()
        shutil.rmtree(_SPOOLS, ignore_errors=True)


if __name__ == "__main__":
    main()
