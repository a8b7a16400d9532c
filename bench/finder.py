"""The finder: typical searches over 1M events and 100K people, and live segment membership.

One command (`make bench-finder`; `--quick` for a smoke run), two tables:

1. **Search.** bench/world.py's database: bench/pipeline.py's mix of 100,000 people and 1,000,000
   events, processed by the real pipeline, on SQLite and on PostgreSQL (cached; built once). In this
   process, `Search(storage, ws, parse(text)).page()` (the first page of 50 and the count, as
   `POST /api/v1/people/search` runs them) for a few typical conditions: one warm-up run, then
   `--runs` timed runs each; p50, p95 and max.
2. **Live membership.** A real `cairn serve` (pipeline on) on a copy of the SQLite database with
   `--segments` saved segments made through `POST /api/v1/segments` (varied conditions, most with
   time windows), filled from history (the benchmark waits for every backfill to be `done`). While
   bench/loadgen.py drives the collector at `--rate` events/s (open loop):
   - **entering**: a new probe person sends two orders; once the pipeline has made them a person,
     their third order (`POST /v1/batch`) is sent; latency runs from its acceptance (the 200) to
     the person appearing in `GET /api/v1/segments/{id}/members` of "3+ orders in last 30 days";
   - **window expiry**: a new probe person sends three orders, the oldest timestamped so that it
     leaves the 30-day window 20 s later; lateness is the time the person is gone from the
     members minus the time the window passed that order.
   One thread polls the members every 20 ms (cursor just below the lowest pending probe's id:
   probes are the newest persons) and resolves every pending probe from each answer; another
   samples the pipeline's lag and the segment engine's backlog (`dirty_persons`) every second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvloop

from cairn.finder.search import Search
from cairn.finder.text import parse
from cairn.storage.base import open_storage
from cairn.storage.sql import SQLStorage
from events import format_ms
from ingest import add_postgres_arguments, postgres_server, postgres_unavailable
from loadgen import LoadConfig, LoadResult, Target, generate
from prefill import DATA, Prefilled, copy_sqlite
from report import table
from servers import Server, Usage, start_cairn, watch
from world import machine_line, processed_postgres, processed_sqlite

TARGET_SEARCH_MS = 300.0
TARGET_LIVE_P95_S = 1.0
DAY_MS = 86_400_000
PROBE_SEGMENT = 'did "Order Completed" at least 3 times in last 30 days'
EXPIRY_AFTER_S = 20.0  # an expiry probe's oldest order leaves the window this long after it is sent
POLL_S = 0.02

QUERIES: tuple[tuple[str, str], ...] = (
    ("one trait", 'plan = "pro"'),
    ("event count in a window, property filter",
     'did "Order Completed" at least 2 times in last 30 days where total > 100'),
    ("did not", 'not did "Checkout Started" in last 7 days'),
    ("3 conditions: trait, event count, account trait",
     'plan = "pro" and did "Order Completed" at least 2 times in last 30 days where total > 100 '
     'and account.industry = "Retail"'),
    ("3 conditions: trait, event count, last_seen",
     'plan = "pro" and did "Order Completed" at least 2 times in last 30 days where total > 100 '
     "and last_seen within 14 days"),
)  # fmt: skip
COMBINED = {name for name, _ in QUERIES if name.startswith("3 conditions")}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


# 1. search ------------------------------------------------------------------------------------
@dataclass
class Timed:
    backend: str
    name: str
    text: str
    ms: list[float] = field(default_factory=list)
    total: int = 0


def measure_search(backend: str, prefilled: Prefilled, runs: int) -> list[Timed]:
    storage = open_storage(prefilled.database)
    try:
        assert isinstance(storage, SQLStorage)
        ws = storage.list_workspaces()[0].id
        out = []
        for name, text in QUERIES:
            timed = Timed(backend, name, text)
            condition = parse(text)
            for run in range(runs + 1):
                started = time.perf_counter()
                page = Search(storage, ws, condition).page()
                if run:  # the first run warms the caches
                    timed.ms.append((time.perf_counter() - started) * 1000)
                timed.total = page["total"]
            print(f"  {backend}: {name}: p50 {_quantile(timed.ms, 0.5):.0f} ms, "
                  f"{timed.total:,} people", flush=True)  # fmt: skip
            out.append(timed)
        return out
    finally:
        storage.close()


# 2. live membership ---------------------------------------------------------------------------
def segment_queries(count: int) -> list[str]:
    """`count` varied conditions; the first is the probes' segment."""
    plans = ("free", "starter", "pro", "team", "enterprise")
    events = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed",
              "Cart Viewed", "Products Searched")  # fmt: skip
    pool = [PROBE_SEGMENT]
    pool += [f'plan = "{p}"' for p in plans]
    pool += [f'did "{e}" at least {n} times in last {d} days'
             for e in events for n, d in ((2, 7), (5, 30))]  # fmt: skip
    pool += [f'did "Order Completed" at least 2 times in last {d} days where total > {t}'
             for d, t in ((7, 50), (14, 100), (30, 100), (30, 200))]  # fmt: skip
    pool += [f'not did "{e}" in last {d} days' for e in events[:3] for d in (1, 7)]
    pool += [f'account.industry = "{i}"' for i in ("Retail", "Software", "Finance")]
    pool += [f"last_seen within {d} days" for d in (1, 3, 7)]
    pool += [f'did "Product Viewed" at least {n} times in last {h} hours' for n, h in ((1, 6),
             (3, 24))]  # fmt: skip
    pool += [
        'plan = "pro" and did "Order Completed" at least 2 times in last 30 days where total > 100',
        'plan = "team" and last_seen within 7 days',
        'email ends with "@example.com" and did "Product Added" at least 2 times in last 7 days',
        'did "Order Completed" where (currency = "USD" and total > 150)',
        'did "Product Added" where category = "Outdoor" and not did "Order Completed" '
        "in last 14 days",
        'account.plan = "enterprise" and did "Checkout Started" in last 30 days',
        "first_seen within 14 days",
        "logins > 200",
        'title in ["Founder", "Analyst"] and last_seen within 14 days',
        'did "Cart Viewed" at least 2 times in last 12 hours',
        'did "Order Completed" between "2026-01-01" and "2026-12-31" where products.category '
        '= "Books"',
        'did "Product Viewed" at most 1 time in last 30 days',
        'did "Order Completed" exactly 1 time in last 30 days',
        'plan in ["pro", "team"] and did "Order Completed" at least 1 time in last 7 days',
        "account.employees >= 250 and last_seen within 30 days",
    ]
    if count > len(pool):
        raise SystemExit(f"at most {len(pool)} segments")
    return pool[:count]


@dataclass
class Live:
    segments: int
    backfill_s: float
    rate: float
    entry_s: list[float] = field(default_factory=list)
    expiry_s: list[float] = field(default_factory=list)
    entry_sent: int = 0
    expiry_sent: int = 0
    expiry_unseen: int = 0  # expiry probes never seen as members before they were due
    load: LoadResult | None = None
    usage: Usage = field(default_factory=Usage)
    probe_members: int = 0
    lag_s: list[float] = field(default_factory=list)  # the pipeline's lag, sampled every second
    dirty: list[float] = field(default_factory=list)  # persons waiting for the segment engine


class _Probes:
    """Sends probe orders and resolves them from the members list, as described above."""

    def __init__(self, server: Server, write_key: str, token: str, segment_id: int) -> None:
        self.server, self.segment_id = server, segment_id
        self.collector = httpx.Client(base_url=server.url, auth=(write_key, ""), timeout=30)
        self.api = httpx.Client(base_url=server.url, timeout=30,
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        self.lock = threading.Lock()
        self.entry: dict[int, float] = {}  # person id -> when the third order was accepted
        self.expiry: dict[int, tuple[float, bool]] = {}  # person id -> (due, seen as member)
        self.entry_s: list[float] = []
        self.expiry_s: list[float] = []
        self.unseen = 0
        self.stop = threading.Event()
        self.tag = uuid.uuid4().hex[:6]

    def _orders(self, user: str, times_ms: list[int]) -> float:
        batch = [{"type": "track", "userId": user, "event": "Order Completed",
                  "messageId": uuid.uuid4().hex, "timestamp": format_ms(at),
                  "properties": {"order_id": uuid.uuid4().hex[:12], "total": 42.0,
                                 "currency": "USD"}} for at in times_ms]  # fmt: skip
        answer = self.collector.post("/v1/batch", json={"batch": batch})
        accepted = time.time()
        answer.raise_for_status()
        return accepted

    def _person(self, user: str) -> int | None:
        answer = self.api.get("/api/v1/people/lookup", params={"user_id": user})
        return int(answer.json()["id"]) if answer.status_code == 200 else None

    def drive(self, until: float) -> tuple[int, int]:
        """Start an entry probe every 0.5 s and an expiry probe every second until `until`."""
        waiting: list[tuple[str, str, float, float]] = []  # (kind, user, sent, due)
        entries = expiries = 0
        tick = 0
        while time.time() < until and not self.stop.is_set():
            now_ms = int(time.time() * 1000)
            user = f"probe-{self.tag}-e{tick}"
            self._orders(user, [now_ms - 120_000, now_ms - 60_000])
            waiting.append(("entry", user, time.time(), 0.0))
            if tick % 2 == 0 and time.time() < until - EXPIRY_AFTER_S:
                user = f"probe-{self.tag}-x{tick}"
                oldest = now_ms - 30 * DAY_MS + int(EXPIRY_AFTER_S * 1000)
                self._orders(user, [oldest, now_ms - 60_000, now_ms - 30_000])
                waiting.append(("expiry", user, time.time(), (oldest + 30 * DAY_MS) / 1000))
                expiries += 1
            still = []
            for kind, user, sent, due in waiting:
                pid = self._person(user) if time.time() - sent > 0.3 else None
                if pid is None:
                    still.append((kind, user, sent, due))
                elif kind == "entry":
                    accepted = self._orders(user, [int(time.time() * 1000)])
                    with self.lock:
                        self.entry[pid] = accepted
                    entries += 1
                else:
                    with self.lock:
                        self.expiry[pid] = (due, False)
            waiting = still
            tick += 1
            time.sleep(max(0.0, 0.5 - (time.time() % 0.5)))
        return entries, expiries

    def poll(self) -> None:
        """Every 20 ms: the members from just below the lowest pending probe; resolve probes."""
        while not self.stop.is_set():
            with self.lock:
                pending = [*self.entry, *self.expiry]
            if not pending:
                time.sleep(POLL_S)
                continue
            started = time.time()
            present = self._members(min(pending), max(pending))
            now = time.time()
            with self.lock:
                for pid in list(self.entry):
                    if pid in present:
                        self.entry_s.append(now - self.entry.pop(pid))
                for pid, (due, seen) in list(self.expiry.items()):
                    if pid in present:
                        self.expiry[pid] = (due, True)
                    elif seen:
                        self.expiry_s.append(now - due)
                        del self.expiry[pid]
                    elif now > due + 30:
                        self.unseen += 1
                        del self.expiry[pid]
            time.sleep(max(0.0, POLL_S - (time.time() - started)))

    def sample(self, database: str, live: Live) -> None:
        """Every second: the pipeline's lag (its API) and the segment engine's backlog (the
        `dirty_persons` rows, read from the database file)."""
        import sqlite3

        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        while not self.stop.wait(1.0):
            live.lag_s.append(float(self.api.get("/api/v1/pipeline").json()["lag_seconds"]))
            live.dirty.append(
                float(conn.execute("SELECT count(*) FROM dirty_persons").fetchone()[0])
            )
        conn.close()

    def _members(self, low: int, high: int) -> set[int]:
        found: set[int] = set()
        cursor = str(low - 1)
        while True:
            page = self.api.get(f"/api/v1/segments/{self.segment_id}/members",
                                params={"limit": 1000, "cursor": cursor}).json()  # fmt: skip
            found.update(item["id"] for item in page["data"])
            cursor = page["next_cursor"]
            if cursor is None or int(cursor) >= high:
                return found


def _create_segments(server: Server, token: str, count: int) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
        ids = []
        started = time.monotonic()
        for i, query in enumerate(segment_queries(count)):
            answer = api.post("/api/v1/segments", json={"name": f"bench {i}", "query": query})
            answer.raise_for_status()
            ids.append(answer.json()["id"])
        shown = 0.0
        while True:
            states = api.get("/api/v1/segments").json()["data"]
            done = sum(s["backfill"]["state"] == "done" for s in states)
            elapsed = time.monotonic() - started
            if done == len(states):
                return ids[0], elapsed
            if elapsed - shown >= 30:
                print(f"  backfill: {done} / {len(states)} segments done after {elapsed:.0f} s",
                      flush=True)  # fmt: skip
                shown = elapsed
            time.sleep(1)


def _profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
            "--nonblocking", "--threads", "--format", "raw", "--output", str(out)]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL)


def measure_live(prefilled: Prefilled, options: Options) -> Live:
    folder = copy_sqlite(prefilled, DATA / "run-finder-live")
    server = start_cairn("cairn-finder-live", data_dir=folder)
    try:
        print(f"  creating {options.segments} segments; waiting for their backfill", flush=True)
        segment_id, backfill_s = _create_segments(server, prefilled.token, options.segments)
        print(f"  backfill done in {backfill_s:.0f} s", flush=True)
        live = Live(options.segments, backfill_s, options.rate)
        probes = _Probes(server, prefilled.write_key, prefilled.token, segment_id)
        warmup = 3.0
        config = LoadConfig(connections=8, duration=options.duration, warmup=warmup,
                            rate=options.rate)  # fmt: skip
        # probes start after the warm-up and stop 8 s before the load does, so that every probe
        # resolves while the collector is still taking the load
        until = time.time() + warmup + options.duration - 8
        counts: list[tuple[int, int]] = []

        def drive() -> None:
            time.sleep(warmup)
            counts.append(probes.drive(until))

        database = str(folder / "cairn.db")
        threads = [threading.Thread(target=drive), threading.Thread(target=probes.poll),
                   threading.Thread(target=probes.sample, args=(database, live))]  # fmt: skip
        for thread in threads:
            thread.start()
        spy = _profiler(server.pid, options.duration, options.profile) if options.profile else None
        target = Target("127.0.0.1", server.port, prefilled.write_key)

        async def load() -> LoadResult:
            result, _ = await asyncio.gather(
                generate(target, config), watch(server.pid, warmup, options.duration, live.usage)
            )
            return result

        live.load = uvloop.run(load())
        probes.stop.set()
        for thread in threads:
            thread.join()
        if spy is not None:
            spy.wait()
        live.entry_s, live.expiry_s = probes.entry_s, probes.expiry_s
        live.expiry_unseen = probes.unseen + len(probes.expiry)
        live.entry_sent, live.expiry_sent = counts[0] if counts else (0, 0)
        live.probe_members = probes.api.get(f"/api/v1/segments/{segment_id}").json()["members"]
        return live
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


# the tables -----------------------------------------------------------------------------------
def _verdict(met: bool) -> str:
    return "MET   " if met else "MISSED"


def print_report(searches: list[Timed], live: Live | None, notes: list[str], md: bool) -> None:
    verdicts = []
    if searches:
        lines = [["backend", "search", "runs", "p50 ms", "p95 ms", "max ms", "people matched",
                  "target"]]  # fmt: skip
        for t in searches:
            combined = t.name in COMBINED
            lines.append([t.backend, t.name, str(len(t.ms)), f"{_quantile(t.ms, 0.5):,.0f}",
                          f"{_quantile(t.ms, 0.95):,.0f}", f"{max(t.ms):,.0f}", f"{t.total:,}",
                          "≤ 300 ms" if combined else "-"])  # fmt: skip
            if combined:
                p95 = _quantile(t.ms, 0.95)
                verdicts.append(f"{_verdict(p95 <= TARGET_SEARCH_MS)} {t.backend}: {t.name} "
                                f"≤ 300 ms (p95 {p95:,.0f} ms)")  # fmt: skip
        print("\nSearch (first page of 50 and the count), in process:")
        print(table(lines, md))
        print("\n" + "\n".join(f"  {t.name}: {t.text}" for t in searches[: len(QUERIES)]))
    if live is not None:
        load = live.load
        rate = f"{load.events_per_s:,.0f}" if load else "-"
        lines = [["measure", "probes", "p50 ms", "p95 ms", "max ms", "target"]]
        for name, values, sent in (
            ("event accepted -> member (3rd order)", live.entry_s, live.entry_sent),
            ("window passed -> no longer a member", live.expiry_s, live.expiry_sent),
        ):
            ms = [v * 1000 for v in values]
            lines.append([name, f"{len(ms)}/{sent}", f"{_quantile(ms, 0.5):,.0f}",
                          f"{_quantile(ms, 0.95):,.0f}", f"{max(ms, default=float('nan')):,.0f}",
                          "p95 ≤ 1,000 ms"])  # fmt: skip
            p95 = _quantile(values, 0.95)
            verdicts.append(f"{_verdict(p95 <= TARGET_LIVE_P95_S)} live: {name} p95 ≤ 1 s "
                            f"({p95 * 1000:,.0f} ms)")  # fmt: skip
        print(f"\nLive membership: `cairn serve` (SQLite), {live.segments} segments (backfill "
              f"{live.backfill_s:.0f} s), collector at {rate} events/s, members polled every "
              f"{POLL_S * 1000:.0f} ms:")  # fmt: skip
        print(table(lines, md))
        errors = dict(load.errors) if load else {}
        print(f"\n  server cores {live.usage.server_cores:.2f}, other cores "
              f"{live.usage.other_cores:.2f}, probe segment members {live.probe_members:,}, "
              f"expiry probes unresolved: {live.expiry_unseen}; pipeline lag p50 "
              f"{_quantile(live.lag_s, 0.5):.2f} s, p95 {_quantile(live.lag_s, 0.95):.2f} s, max "
              f"{max(live.lag_s, default=0):.2f} s; persons waiting for the segment engine p50 "
              f"{_quantile(live.dirty, 0.5):,.0f}, max {max(live.dirty, default=0):,.0f}"
              + (f", load errors {errors}" if errors else ""))  # fmt: skip
    print()
    for line in notes + verdicts:
        print(line)


# running it -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    events: int
    runs: int
    segments: int
    duration: float
    rate: float
    only: tuple[str, ...]
    backends: tuple[str, ...]
    postgres_url: str
    postgres_label: str  # "postgres", or "postgres-tuned" on bench/cluster.py's cluster
    markdown: bool
    profile: Path | None


def _arguments() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events in the database (1,000,000)")
    parser.add_argument("--runs", type=int, help="timed runs of each search (7)")
    parser.add_argument("--segments", type=int, help="saved segments of the live row (50)")
    parser.add_argument("--duration", type=float, help="seconds of load in the live row (60)")
    parser.add_argument("--rate", type=float, default=2_000.0, help="events/s of the load")
    parser.add_argument("--quick", action="store_true",
                        help="3 runs, 10 segments, 25 s of load: a smoke run")  # fmt: skip
    parser.add_argument("--only", action="append", choices=["search", "live"])
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"],
                        help="search only on these backends (repeatable)")  # fmt: skip
    add_postgres_arguments(parser)
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--profile", type=Path,
                        help="py-spy raw stacks of the server under load here")  # fmt: skip
    args = parser.parse_args()
    server = postgres_server(args)
    return Options(
        events=args.events or 1_000_000,
        runs=args.runs or (3 if args.quick else 7),
        segments=args.segments or (10 if args.quick else 50),
        duration=args.duration or (25.0 if args.quick else 60.0),
        rate=args.rate,
        only=tuple(args.only or ("search", "live")),
        backends=tuple(args.backend or ("sqlite", "postgres")),
        postgres_url=server.url,
        postgres_label=server.label,
        markdown=args.markdown,
        profile=args.profile,
    )


def main() -> None:
    options = _arguments()
    print(machine_line(), flush=True)
    notes: list[str] = []
    backends = list(options.backends)
    if "postgres" in backends and (reason := postgres_unavailable(options.postgres_url)):
        backends.remove("postgres")
        notes.append(f"postgres: skipped, {reason}")
    searches: list[Timed] = []
    live = None
    sqlite = processed_sqlite(options.events)
    if "search" in options.only:
        for backend in backends:
            print(f"search on {backend}", flush=True)
            prefilled = sqlite if backend == "sqlite" else processed_postgres(
                options.postgres_url, options.events)  # fmt: skip
            label = options.postgres_label if backend == "postgres" else backend
            searches += measure_search(label, prefilled, options.runs)
    if "live" in options.only:
        print("live membership", flush=True)
        live = measure_live(sqlite, options)
    age_h = (time.time() - Path(sqlite.database.removeprefix("sqlite:///")).stat().st_mtime) / 3600
    notes.append(f"database: {options.events:,} events of the mix, processed; built "
                 f"{age_h:.1f} h ago (its events span the 30 days before that)")  # fmt: skip
    notes.append(f"load average {os.getloadavg()[0]:.2f} after the run")
    print_report(searches, live, notes, options.markdown)


if __name__ == "__main__":
    main()
