"""Who holds the log's write turn: the closed loop against `cairn serve`, with each worker's share.

With several workers the processes' appends take turns (docs/ingest.md, "Durability"); when the turn
is held nearly all the time, the turn, not the CPU, sets the closed-loop rate. This drives a fresh
`cairn serve --no-pipeline` (an empty SQLite database, or `--database-url`) with the ingest
benchmark's load and samples `GET /api/v1/stats` (`writer.commit_ms_total`, per process) to print,
per worker: commits/s, events/s, events a commit, the share of wall time inside appends and the
append time per event. A diagnostic, not a benchmark with targets: `python bench/turn.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from typing import Any

from loadgen import LoadConfig, Target, generate, summary
from prefill import DATA
from servers import Server, start_cairn

__all__ = ["main"]


def _cairn(*args: str) -> Any:
    command = [sys.executable, "-m", "cairn", *args, "--json"]
    return json.loads(subprocess.check_output(command))


async def _sample(server: Server, token: str, stop: asyncio.Event) -> dict[int, list[Any]]:
    """`writer` of `/api/v1/stats` every 20 ms, by process (new connections spread over them)."""
    seen: dict[int, list[Any]] = {}
    while not stop.is_set():
        stats = await asyncio.to_thread(server.get_json, "/api/v1/stats", token)
        writer = stats["writer"]
        seen.setdefault(writer["process"], []).append((time.monotonic(), writer))
        await asyncio.sleep(0.02)
    return seen


async def _run(server: Server, write_key: str, token: str, config: LoadConfig) -> None:
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(server, token, stop))
    result = await generate(Target("127.0.0.1", server.port, write_key), config)
    stop.set()
    seen = await sampler
    print(summary(result))
    held = 0.0
    for pid, samples in sorted(seen.items()):
        # From the end of the warm-up on (the first samples are the warm-up's).
        start = next((s for s in samples if s[0] >= samples[0][0] + config.warmup), samples[0])
        (t0, a), (t1, b) = start, samples[-1]
        seconds = max(t1 - t0, 1e-9)
        commits = b["commits"] - a["commits"]
        events = b["events"] - a["events"]
        ms = b["commit_ms_total"] - a["commit_ms_total"]
        held += ms / seconds / 10
        print(f"  worker {pid}: {commits / seconds:,.0f} commits/s, {events / seconds:,.0f} "
              f"events/s, {events / max(commits, 1):,.0f} events a commit, in appends "
              f"{ms / seconds / 10:.1f}% of the time, {ms * 1000 / max(events, 1):.1f} µs per "
              "event")  # fmt: skip
    print(f"  the write turn was held {held:.0f}% of the time (the workers' shares added)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-url", default="", help="PostgreSQL instead of a new SQLite")
    args = parser.parse_args()
    data = DATA / "turn"
    shutil.rmtree(data, ignore_errors=True)
    where = ["--data-dir", str(data)] + (["--database-url", args.database_url]
                                          if args.database_url else [])  # fmt: skip
    source = _cairn("sources", "create", f"turn-{int(time.time())}", *where)
    token = _cairn("tokens", "create", *where)["token"]
    server = start_cairn("cairn-turn", data_dir=data, database_url=args.database_url,
                         pipeline=False, workers=args.workers)  # fmt: skip
    config = LoadConfig(connections=args.connections, duration=args.duration, warmup=args.warmup)
    try:
        asyncio.run(_run(server, source["write_key"], token, config))
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
