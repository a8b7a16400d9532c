"""A cheap HTTP/1.1 load generator for the collector: Segment batches over keep-alive connections.

Closed loop: each connection sends its next batch as soon as the last one is answered
(throughput). Open loop: batches are scheduled at a fixed rate and latency is counted from the
scheduled send time, so a server that falls behind cannot hide its queueing (no coordinated
omission).

Bodies come from 64 batch templates encoded once; the current second is put into them once a second
(`timestamp`, `sentAt`), and a request only joins its template around its own 16-hex-digit id,
which makes every `messageId` unique.
Run alone: `python bench/loadgen.py --port 8000 --write-key KEY [--rate 5000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import msgspec
import uvloop

from events import USERS, format_ms, track_message

__all__ = ["BatchFactory", "LoadConfig", "LoadResult", "Target", "generate", "summary"]

_OK_BODY = b'{"success":true}'
_REQUEST_MARK = "@@REQUEST@@"
_TIME_MARK = "@@SECOND@@"
_SCRAMBLE = 0x9E3779B97F4A7C15  # odd, so n -> n * _SCRAMBLE mod 2**64 is a bijection
_MASK = 2**64 - 1
_VARIANTS = 64


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    write_key: str = ""
    path: str = "/v1/batch"


@dataclass(frozen=True)
class LoadConfig:
    connections: int = 32
    duration: float = 20.0
    warmup: float = 3.0
    batch_size: int = 100
    rate: float | None = None  # events per second for the open loop; None for the closed loop
    timeout: float = 60.0


@dataclass
class LoadResult:
    """What one run measured. Counts and latencies cover the measured window only, except
    `accepted_events`: every event answered 200, which is what the server must have stored."""

    config: LoadConfig
    window: float = 0.0
    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    accepted_events: int = 0
    cpu_seconds: float = 0.0
    body_bytes: int = 0

    @property
    def events(self) -> int:
        return self.requests * self.config.batch_size

    @property
    def events_per_s(self) -> float:
        return self.events / self.window if self.window else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.window if self.window else 0.0

    @property
    def generator_cpu(self) -> float:
        """The load generator's own CPU use, in cores, over the whole run."""
        total = self.config.warmup + self.config.duration
        return self.cpu_seconds / total if total else 0.0

    def percentile(self, q: float) -> float:
        """Latency in seconds at quantile `q` (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class BatchFactory:
    """Request bodies: a batch template joined around a unique request id.

    Templates are encoded once with markers; once a second the time marker is replaced with the
    previous second (a C-speed `bytes.replace`), so building a body never stalls the event loop.
    """

    def __init__(self, batch_size: int, seed: int | None = None) -> None:
        rng = random.Random(seed)
        run_tag = os.urandom(6).hex()  # ids differ between runs on the same database
        self._encoded = [_template(rng, batch_size, run_tag) for _ in range(_VARIANTS)]
        self._templates: list[list[bytes]] = []
        self._second = 0
        self._count = 0

    def body(self) -> bytes:
        second = int(time.time()) - 1
        if second != self._second:
            self._restamp(second)
        n = self._count
        self._count = n + 1
        request_id = b"%016x" % (n * _SCRAMBLE & _MASK)
        return request_id.join(self._templates[n % _VARIANTS])

    def _restamp(self, second: int) -> None:
        stamp = format_ms(second * 1000)[:19].encode()  # 2026-11-29T12:00:00
        marks = (_TIME_MARK.encode(), _REQUEST_MARK.encode())
        self._templates = [t.replace(marks[0], stamp).split(marks[1]) for t in self._encoded]
        self._second = second


def _template(rng: random.Random, batch_size: int, run_tag: str) -> bytes:
    """A batch as JSON, with markers where the request id and the current second go."""
    items = []
    for i in range(batch_size):
        # A distinct prefix per item (odd multiplier: a bijection mod 2**16) spreads one request's
        # ids across the dedupe index, as random uuid4 messageIds would be.
        message_id = f"{i * 40503 % 65536:04x}{_REQUEST_MARK}-{run_tag}"
        stamp = f"{_TIME_MARK}.{rng.randrange(900):03d}Z"
        items.append(track_message(rng, rng.randrange(USERS), stamp, message_id))
    return msgspec.json.encode({"batch": items, "sentAt": f"{_TIME_MARK}.950Z"})


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        response = _parse_response(self._buffer)
        if response is not None:
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.writelines((head, body))
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _parse_response(buffer: bytearray) -> tuple[int, bytes] | None:
    """(status, body) of the complete response at the start of `buffer`, consumed; else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ConnectionError("response without Content-Length")
    stop = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    total = end + 4 + length
    if len(buffer) < total:
        return None
    status = int(head[9:12])
    body = bytes(buffer[end + 4 : total])
    del buffer[:total]
    return status, body


class _Run:
    """The state one run shares between its connections."""

    def __init__(self, target: Target, config: LoadConfig) -> None:
        self.target = target
        self.config = config
        self.factory = BatchFactory(config.batch_size)
        self.result = LoadResult(config)
        self._head = _request_head(target)
        now = time.perf_counter()
        self.start = now
        self.measure_from = now + config.warmup
        self.stop_at = self.measure_from + config.duration

    def head(self, length: int) -> bytes:
        return self._head % length

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.target.host, self.target.port)
        return conn

    async def send(self, conn: _Connection, scheduled: float | None = None) -> None:
        body = self.factory.body()
        started = time.perf_counter() if scheduled is None else scheduled
        status, answer = await conn.request(self.head(len(body)), body)
        self.record(started, time.perf_counter(), status, answer)

    def record(self, started: float, done: float, status: int, answer: bytes) -> None:
        ok = status == 200 and answer == _OK_BODY
        result = self.result
        if ok:
            result.accepted_events += self.config.batch_size
        elif status == 200:
            result.errors["200 with rejections"] += 1
        else:
            result.errors[str(status)] += 1
        if ok and self.measure_from <= started and done <= self.stop_at:
            result.requests += 1
            result.latencies.append(done - started)


def _request_head(target: Target) -> bytes:
    auth = base64.b64encode(f"{target.write_key}:".encode()).decode()
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        f"Authorization: Basic {auth}",
        "Content-Type: application/json",
        "User-Agent: cairn-bench/1",
        "Content-Length: %d",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _closed_worker(run: _Run) -> None:
    conn: _Connection | None = None
    while time.perf_counter() < run.stop_at:
        try:
            if conn is None or conn.closed:
                conn = await run.connect()
            await run.send(conn)
        except (ConnectionError, OSError) as exc:
            run.result.errors[f"connection: {type(exc).__name__}"] += 1
            conn = None
            await asyncio.sleep(0.05)
    if conn is not None:
        conn.close()


async def _open_worker(run: _Run, queue: asyncio.Queue[float | None]) -> None:
    conn: _Connection | None = None
    while (scheduled := await queue.get()) is not None:
        try:
            if conn is None or conn.closed:
                conn = await run.connect()
            await run.send(conn, scheduled)
        except (ConnectionError, OSError) as exc:
            run.result.errors[f"connection: {type(exc).__name__}"] += 1
            conn = None
    if conn is not None:
        conn.close()


async def _schedule(run: _Run, queue: asyncio.Queue[float | None], rate: float) -> None:
    interval = run.config.batch_size / rate
    due = run.start
    while due < run.stop_at:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(due)
        due += interval
    for _ in range(run.config.connections):
        queue.put_nowait(None)


async def generate(target: Target, config: LoadConfig) -> LoadResult:
    """Drive `target` for `config.warmup + config.duration` seconds; wait for answers in flight."""
    cpu = time.process_time()
    run = _Run(target, config)
    if config.rate is None:
        tasks = [_closed_worker(run) for _ in range(config.connections)]
    else:
        queue: asyncio.Queue[float | None] = asyncio.Queue()
        tasks = [_open_worker(run, queue) for _ in range(config.connections)]
        tasks.append(_schedule(run, queue, config.rate))
    limit = config.warmup + config.duration + config.timeout
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), limit)
    except TimeoutError:
        run.result.errors["timeout (no answer at the end)"] += 1
    run.result.window = config.duration
    run.result.cpu_seconds = time.process_time() - cpu
    run.result.body_bytes = len(run.factory.body())
    return run.result


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--write-key", default="")
    parser.add_argument("--path", default="/v1/batch")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rate", type=float, help="events/s: open loop at this rate")
    return parser.parse_args()


def summary(result: LoadResult) -> str:
    """One line: rates, latency percentiles, errors and what the generator cost."""
    ms = 1000.0
    return (
        f"{result.events_per_s:,.0f} events/s  {result.requests_per_s:,.0f} req/s  "
        f"p50 {result.percentile(0.5) * ms:.1f} ms  p99 {result.percentile(0.99) * ms:.1f} ms  "
        f"max {max(result.latencies, default=0) * ms:.1f} ms  accepted {result.accepted_events:,}  "
        f"errors {dict(result.errors) or 'none'}  generator {result.generator_cpu:.2f} cores  "
        f"body {result.body_bytes:,} bytes"
    )


def main() -> None:
    args = _arguments()
    target = Target(args.host, args.port, args.write_key, args.path)
    config = LoadConfig(
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        batch_size=args.batch_size,
        rate=args.rate,
    )
    print(summary(uvloop.run(generate(target, config))))


if __name__ == "__main__":
    main()
