"""The ingest benchmark: `cairn serve` against a no-op ceiling, one command, one table.

For each server (the no-op ceiling, Cairn on SQLite, Cairn on PostgreSQL when reachable) it starts
the server, drives it from the load generator on loopback (batches of 100 events of ~700 bytes, 32
keep-alive connections, closed loop), and for Cairn also at a fixed 5,000 events/s (open loop) for
latency. Cairn runs on a copy of a prefilled database (5,000,000 events by default) and the stored
count is checked after every row: an event answered 200 but not stored is reported as LOST.
`make bench`, or `python bench/ingest.py --quick` for a smoke run; `--help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from cairn.storage.base import open_storage
from cairn.workspaces import DEFAULT_WORKSPACE
from cluster import tuned_postgres
from loadgen import LoadConfig, Target, generate, summary
from prefill import (
    DATA,
    Prefilled,
    copy_postgres,
    copy_sqlite,
    drop_postgres_copy,
    prefill_postgres,
    prefill_sqlite,
)
from report import Row, print_report
from servers import Server, Usage, start_cairn, start_noop, watch

__all__ = ["PostgresServer", "add_postgres_arguments", "main", "postgres_server"]

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
OPEN_LOOP_RATE = 5_000.0


@dataclass(frozen=True)
class PostgresServer:
    """The PostgreSQL server the rows run on, and how rows on it are labelled."""

    url: str
    label: str  # "postgres" (the URL given), or "postgres-tuned" (bench/cluster.py's cluster)


def add_postgres_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres-url", default=os.environ.get("CAIRN_BENCH_POSTGRES_URL",
                                                                  POSTGRES_URL))  # fmt: skip
    parser.add_argument("--tuned-postgres", action="store_true",
                        help="run the PostgreSQL rows on the benchmarks' own cluster with "
                        "production settings (bench/cluster.py, port 5433; made on demand)")  # fmt: skip


def postgres_server(args: argparse.Namespace) -> PostgresServer:
    """The server of `add_postgres_arguments`' options; the tuned cluster is made and started."""
    if args.tuned_postgres:
        return PostgresServer(tuned_postgres(), "postgres-tuned")
    return PostgresServer(args.postgres_url, "postgres")


@dataclass(frozen=True)
class Options:
    events_stored: int
    duration: float
    warmup: float
    connections: int
    only: tuple[str, ...]
    postgres: PostgresServer
    markdown: bool
    profile: Path | None
    workers: int | None


async def _drive(server: Server, write_key: str, config: LoadConfig, profile: Path | None) -> Row:
    usage = Usage()
    target = Target("127.0.0.1", server.port, write_key)
    spy = _start_profiler(server.pid, config, profile) if profile else None
    result, _ = await asyncio.gather(
        generate(target, config), watch(server.pid, config.warmup, config.duration, usage)
    )
    if spy is not None:
        await spy
    return Row(server.name, result, usage)


def _start_profiler(pid: int, config: LoadConfig, out: Path) -> asyncio.Task[int]:
    """py-spy over the measured window (raw collapsed stacks in `out`), started after warm-up."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [spy, "record", "--pid", str(pid), "--duration", str(int(config.duration)),
            "--rate", "200", "--nonblocking", "--threads", "--subprocesses", "--format", "raw",
            "--output", str(out)]  # fmt: skip

    async def run() -> int:
        await asyncio.sleep(config.warmup)
        proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL)
        return await proc.wait()

    return asyncio.ensure_future(run())


def measure(server: Server, write_key: str, config: LoadConfig, profile: Path | None = None) -> Row:
    row = uvloop.run(_drive(server, write_key, config, profile))
    print(f"  {summary(row.result)}", flush=True)
    return row


def _config(options: Options, rate: float | None = None) -> LoadConfig:
    return LoadConfig(
        connections=options.connections,
        duration=options.duration,
        warmup=options.warmup,
        rate=rate,
    )


def run_noop(options: Options, name: str = "noop (ceiling)") -> Row:
    print(f"{name}: decode with msgspec, answer 200", flush=True)
    server = start_noop()
    try:
        row = measure(server, "", _config(options))
    finally:
        server.stop()
    row.name = name
    return row


def _stored(database: str) -> int:
    """Events in the database, counted by the benchmark itself: asking the server would fill one
    of its read connections' page cache and inflate the RSS being measured."""
    storage = open_storage(database)
    try:
        workspace = storage.workspace_by_name(DEFAULT_WORKSPACE)
        assert workspace is not None
        return storage.count_events(workspace.id)
    finally:
        storage.close()


def _check(before: int, after: int, accepted: int) -> str:
    expected = before + accepted
    if after == expected:
        return f"ok +{accepted:,}"
    if after < expected:
        return f"LOST {expected - after:,} of {accepted:,}"
    return f"ok +{accepted:,} (+{after - expected:,} unanswered)"


def run_cairn(
    label: str,
    server: Server,
    prefilled: Prefilled,
    database: str,
    options: Options,
    profile: Path | None = None,
) -> list[Row]:
    """The closed-loop row, then the open-loop row at 5,000 events/s, each checked by count."""
    rows = []
    for rate in (None, OPEN_LOOP_RATE):
        before = _stored(database)
        how = "closed loop" if rate is None else f"{rate:,.0f} events/s"
        print(f"{label}: {before:,} events stored; driving {how}", flush=True)
        row = measure(server, prefilled.write_key, _config(options, rate), profile)
        profile = None
        row.stored_before = before
        row.check = _check(before, _stored(database), row.result.accepted_events)
        row.name = label if rate is None else f"{label} @ {rate:,.0f} ev/s open loop"
        rows.append(row)
    code = server.stop()
    if code != 0:
        rows[-1].notes.append(f"{label} exited with code {code} on SIGINT:\n{server.tail()}")
    return rows


def run_sqlite(options: Options) -> list[Row]:
    prefilled = prefill_sqlite(options.events_stored)
    started = time.monotonic()
    data_dir = copy_sqlite(prefilled, DATA / "run-sqlite")
    print(
        f"sqlite: copied the prefilled database in {time.monotonic() - started:.1f} s", flush=True
    )
    # The collector alone, as issue 2 defines it: with the pipeline in the same process the
    # prefilled backlog would be processed during the measurement (bench/pipeline.py measures that).
    server = start_cairn("cairn-sqlite", data_dir=data_dir, pipeline=False, workers=options.workers)
    try:
        database = f"sqlite:///{data_dir / 'cairn.db'}"
        rows = run_cairn("cairn sqlite", server, prefilled, database, options, options.profile)
    finally:
        server.stop()
    _discard(rows, lambda: shutil.rmtree(data_dir), str(data_dir))
    return rows


def _discard(rows: list[Row], remove: Callable[[], object], where: str) -> None:
    """Remove a run's database copy, unless it lost events: then keep it to look into."""
    if all(row.check.startswith("ok") for row in rows):
        remove()
    else:
        rows[-1].notes.append(f"the database copy is kept for inspection: {where}")


def postgres_unavailable(url: str) -> str | None:
    """Why PostgreSQL cannot be benchmarked, or None when it can."""
    if importlib.util.find_spec("cairn.storage.postgres") is None:
        return "cairn.storage.postgres does not exist yet"
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {url}: {exc}".strip()
    return None


def run_postgres(options: Options) -> list[Row]:
    prefilled = prefill_postgres(options.postgres.url, options.events_stored)
    started = time.monotonic()
    url = copy_postgres(prefilled)
    label = options.postgres.label
    print(f"{label}: copied the prefilled database in {time.monotonic() - started:.1f} s")
    server = start_cairn(
        "cairn-postgres",
        data_dir=DATA / "run-postgres",
        database_url=url,
        pipeline=False,
        workers=options.workers,
    )
    try:
        rows = run_cairn(f"cairn {label}", server, prefilled, url, options)
    finally:
        server.stop()
    _discard(rows, lambda: drop_postgres_copy(url), url)
    return rows


def _arguments() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-stored", type=int, help="prefilled events (default 5,000,000)")
    parser.add_argument("--duration", type=float, help="measured seconds per row (default 20)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds first (default 3)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="50,000 stored, 5 s rows: a smoke run")
    parser.add_argument("--only", action="append", choices=["noop", "sqlite", "postgres"],
                        help="run only these (repeatable)")  # fmt: skip
    add_postgres_arguments(parser)
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks of the SQLite row here")
    parser.add_argument("--workers", type=int,
                        help="cairn serve --workers N (default: Cairn's own, one per core)")  # fmt: skip
    args = parser.parse_args()
    return Options(
        events_stored=args.events_stored or (50_000 if args.quick else 5_000_000),
        duration=args.duration or (5.0 if args.quick else 20.0),
        warmup=args.warmup or (2.0 if args.quick else 3.0),
        connections=args.connections,
        only=tuple(args.only or ("noop", "sqlite", "postgres")),
        postgres=postgres_server(args),
        markdown=args.markdown,
        profile=args.profile,
        workers=args.workers,
    )


def main() -> None:
    options = _arguments()
    workers = options.workers if options.workers is not None else "default"
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} before the run; cairn serve --workers {workers}",
          flush=True)  # fmt: skip
    rows: list[Row] = []
    skipped: list[str] = []
    if "noop" in options.only:
        rows.append(run_noop(options))
    if "sqlite" in options.only:
        rows += run_sqlite(options)
    if "postgres" in options.only:
        reason = postgres_unavailable(options.postgres.url)
        if reason is None:
            rows += run_postgres(options)
        else:
            skipped.append(f"cairn {options.postgres.label}: skipped, {reason}")
    if "noop" in options.only and len(rows) > 1:
        # This VM's speed drifts by tens of percent over minutes: measure the ceiling on both sides.
        rows.append(run_noop(options, "noop (ceiling, again)"))
    print_report(rows, skipped, options.markdown)


if __name__ == "__main__":
    main()
