"""The pipeline benchmark: events through the whole pipeline, its lag under load, timeline pages.

One command, three measurements, one table (`make bench-pipeline`; `--quick` for a smoke run):

1. **Throughput.** A log of 500,000 events of a realistic mix of 100,000 people is written straight
   into the database (the collector's own `normalize`, then `Storage.append`; cached under
   `bench/.data` like bench/prefill.py's databases and copied for each run), then
   `Pipeline.run_until_idle()` is timed in this process from a fresh cursor: events per second for
   one worker, on SQLite and on PostgreSQL.
2. **Lag.** A real `cairn serve` (pipeline on, the default) on a copy of a database of 1,000,000 mix
   events already processed takes 5,000 events/s from bench/loadgen.py for 30 s, while
   `GET /api/v1/pipeline` is sampled every 100 ms: lag p50/p95/max.
3. **Timeline.** On that processed database, `person_timeline` first pages (limit 50) for random
   persons and for the heaviest ones, and second pages through the cursor: p50/p95/p99.

The mix: 100,000 people. 40% browse anonymously (page and track with an anonymousId), then identify
(userId and anonymousId, with traits) and go on with their userId (from the browser with both ids,
or from a server with the userId only); one in ten of them later comes back on a second device and
logs in there too, which merges the second device's anonymous person into theirs. 50% are known
from the start (an identify with traits, then the userId only); 10% stay anonymous. 5% of the
people belong to one of 1,000 accounts: a group call with account traits, then their track events
carry `context.groupId`. Activity is heavy-tailed (Pareto weights): most people send a handful of
events, the heaviest a few thousand. Tracks are bench/events.py's ecommerce events; "Order
Completed" carries `revenue` seven times in ten; identifies update traits now and then.
`python bench/pipeline.py --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from cairn.automations import AutomationEngine
from cairn.pipeline.batch import Stats
from cairn.pipeline.runner import Pipeline
from cairn.server import tune_runtime
from cairn.settings import Settings
from cairn.storage.base import Storage, open_storage
from cairn.storage.people import PeopleStore
from cairn.storage.sql import SQLStorage
from cairn.timeline.query import TimelineQuery, person_timeline
from events import USERS, track_message, user_ids
from ingest import add_postgres_arguments, postgres_server, postgres_unavailable
from loadgen import LoadConfig, LoadResult, Target, generate
from prefill import (
    DATA,
    Prefilled,
    copy_postgres,
    copy_sqlite,
    drop_postgres_copy,
    fill,
    normalized_chunk,
    prefill_postgres,
    prefill_sqlite,
)
from report import table
from servers import Server, Usage, machine_busy_seconds, start_cairn, watch

__all__ = ["autovacuum", "fill_and_process", "main", "mix_chunk"]

ACCOUNTS = 1_000
NEVER = 2.0  # a log fraction no event reaches
LIMIT = 50  # timeline page size
LOG_KIND = "pipeline_log"  # cached databases: the raw mix, and the mix already processed
PROCESSED_KIND = "pipeline_done"

TARGET_EVENTS_PER_S = 15_000.0
TARGET_LAG_P95_S = 1.0
TARGET_PAGE_P95_MS = 10.0

_PLANS = ("free", "starter", "pro", "team", "enterprise")
_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Linus", "Margaret", "Tim")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Perlman", "Hamilton")
_TITLES = ("Engineer", "Product Manager", "Designer", "Founder", "Analyst", "Support Lead")
_INDUSTRIES = ("Retail", "Software", "Finance", "Health", "Education", "Logistics")
_PAGES = (
    ("Home", "/", "Shop: outdoor, kitchen, games and books"),
    ("Category", "/c/outdoor", "Outdoor gear"),
    ("Category", "/c/kitchen", "Kitchen"),
    ("Search", "/search?q=backpack", "Search results: backpack"),
    ("Pricing", "/pricing", "Plans and pricing"),
    ("Blog", "/blog/packing-list", "The ultimate packing list"),
    ("Cart", "/cart", "Your cart"),
)
_SCREENS = ("Home", "Product", "Cart", "Orders", "Settings")
_REFERRERS = ("https://www.google.com/", "https://news.ycombinator.com/", "", "https://t.co/x")
_BROWSER = {"name": "analytics.js", "version": "npm:next-1.84.3"}
_SERVER = {"name": "analytics-node", "version": "2.1.3"}
_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


# the mix ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Person:
    number: int  # its userId and anonymousId are bench/events.py's `user_ids(number)`
    kind: str  # "browser" (anonymous, then identified), "known" or "anonymous"
    identify_at: float  # where in the log (a fraction) it identifies; NEVER for anonymous people
    account: int | None
    group_at: float
    device_at: float  # a second device: an anonymous page, then a login there; NEVER for most


@dataclass(frozen=True)
class _Population:
    people: list[_Person]
    cum_weights: list[float]  # activity: background events pick people by these
    planned: list[tuple[float, int, str]]  # (log fraction, person, what): their first events
    planned_at: list[float]


@functools.cache
def _population() -> _Population:
    """The 100,000 people, the same in every process (a fixed seed)."""
    rng = random.Random(2026)
    people: list[_Person] = []
    cum: list[float] = []
    planned: list[tuple[float, int, str]] = []
    running = 0.0
    for n in range(USERS):
        roll = rng.random()
        kind = "browser" if roll < 0.4 else "known" if roll < 0.9 else "anonymous"
        identify_at = rng.uniform(0.01, 0.97) if kind != "anonymous" else NEVER
        account, group_at, device_at = None, NEVER, NEVER
        if kind != "anonymous" and rng.random() < 0.05 / 0.9:
            account, group_at = rng.randrange(ACCOUNTS), identify_at + rng.uniform(0.0001, 0.01)
            planned.append((group_at, n, "group"))
        if kind == "browser":
            planned.append((identify_at - rng.uniform(0.0005, 0.005), n, "first visit"))
            if rng.random() < 0.1:
                device_at = identify_at + rng.uniform(0.005, 0.02)
                planned.append((device_at, n, "device visit"))
                planned.append((device_at + 0.0002, n, "device login"))
        if kind == "anonymous":
            planned.append((rng.uniform(0.0, 0.99), n, "first visit"))
        else:
            planned.append((identify_at, n, "identify"))
        people.append(_Person(n, kind, identify_at, account, group_at, device_at))
        running += min(rng.paretovariate(1.3), 1500.0)
        cum.append(running)
    planned.sort()
    return _Population(people, cum, planned, [at for at, _, _ in planned])


def mix_chunk(
    first: int, count: int, total: int, start_ms: int, workspace: int, source: str
) -> bytes:
    """Log positions `first` to `first + count` of a mix of `total` events, normalized (a
    `prefill.ChunkMaker`): the people's planned first events that fall there, and activity."""
    mix = _population()
    lo = bisect.bisect_left(mix.planned_at, first / total)
    hi = bisect.bisect_left(mix.planned_at, (first + count) / total)
    planned = mix.planned[lo:hi]
    spare = count - len(planned)
    if spare < 0:
        raise ValueError(f"{total:,} events are too few for the mix of {USERS:,} people")
    rng = random.Random(first + 1)
    drawn = rng.choices(range(USERS), cum_weights=mix.cum_weights, k=spare)
    step = count / max(spare, 1)
    activity = [((first + (i + 0.5) * step) / total, n, "") for i, n in enumerate(drawn)]
    plan = sorted(planned + activity)
    messages = [_message(rng, mix.people[n], what, at) for at, n, what in plan]
    return normalized_chunk(messages, first, total, start_ms, workspace, source, rng)


def _message(rng: random.Random, p: _Person, what: str, at: float) -> dict[str, Any]:
    user, anonymous = user_ids(p.number)
    if what == "first visit":
        return _ids(_page(rng, p.number), None, anonymous)
    if what == "identify":
        return _ids(_identify(rng, p, first=True), user, anonymous if p.kind == "browser" else None)
    if what == "group":
        return _ids(_group(rng, p), user, None)
    device = user_ids(p.number + USERS)[1]
    if what == "device visit":
        return _ids(_page(rng, p.number), None, device)
    if what == "device login":
        return _ids(_identify(rng, p, first=False), user, device)
    return _activity(rng, p, at, user, anonymous)


def _activity(
    rng: random.Random, p: _Person, at: float, user: str, anonymous: str
) -> dict[str, Any]:
    """One event of everyday use: anonymous before the person identifies, then by userId."""
    if p.kind == "anonymous" or (p.kind == "browser" and at < p.identify_at):
        message = _page(rng, p.number) if rng.random() < 0.5 else _track(rng, p.number)
        return _ids(message, None, anonymous)
    roll = rng.random()
    if roll < 0.65:
        message = _track(rng, p.number)
        if p.account is not None and at >= p.group_at:
            message["context"]["groupId"] = f"acct_{p.account:04d}"
    elif roll < 0.90:
        message = _page(rng, p.number)
    elif roll < 0.97:
        message = _screen(rng)
    else:
        message = _identify(rng, p, first=False)
    from_browser = p.kind == "browser" and rng.random() < 0.5
    if not from_browser:
        message.setdefault("context", {})["library"] = _SERVER
    return _ids(message, user, anonymous if from_browser else None)


def _ids(message: dict[str, Any], user: str | None, anonymous: str | None) -> dict[str, Any]:
    message.pop("userId", None)
    message.pop("anonymousId", None)
    if user is not None:
        message["userId"] = user
    if anonymous is not None:
        message["anonymousId"] = anonymous
    return message


def _browser_context(n: int, page: dict[str, str]) -> dict[str, Any]:
    return {
        "library": _BROWSER,
        "page": page,
        "userAgent": _USER_AGENT,
        "locale": "en-US",
        "timezone": "Europe/Berlin",
        "ip": f"198.51.100.{n % 250 + 1}",
    }


def _page(rng: random.Random, n: int) -> dict[str, Any]:
    name, path, title = rng.choice(_PAGES)
    url = f"https://shop.example.com{path}"
    page = {"path": path, "referrer": rng.choice(_REFERRERS), "title": title, "url": url}
    context = _browser_context(n, page)
    return {"type": "page", "name": name, "properties": dict(page), "context": context}


def _track(rng: random.Random, n: int) -> dict[str, Any]:
    message = track_message(rng, n, "", "")
    properties = message["properties"]
    if message["event"] == "Order Completed":
        properties["order_id"] = f"ord_{rng.getrandbits(40):010x}"
        properties["total"] = properties["value"]
        if rng.random() < 0.7:
            properties["revenue"] = properties["value"]
    return message


def _screen(rng: random.Random) -> dict[str, Any]:
    return {
        "type": "screen",
        "name": rng.choice(_SCREENS),
        "properties": {"variation": rng.choice(("a", "b"))},
        "context": {
            "library": {"name": "analytics-ios", "version": "4.1.8"},
            "app": {"name": "Shop", "version": "3.12.0", "build": "3120"},
            "device": {"manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
            "os": {"name": "iOS", "version": "18.1"},
        },
    }


def _identify(rng: random.Random, p: _Person, *, first: bool) -> dict[str, Any]:
    user, _ = user_ids(p.number)
    traits: dict[str, Any] = {"plan": rng.choice(_PLANS), "logins": rng.randint(1, 400)}
    if first:
        traits |= {
            "name": f"{_FIRST[p.number % 10]} {_LAST[p.number // 10 % 8]}",
            "email": f"{user}@example.com",
            "title": rng.choice(_TITLES),
            "createdAt": "2026-10-01T09:30:00.000Z",
            "logins": 1,
        }
        if p.account is not None:
            traits["company"] = {"id": f"acct_{p.account:04d}"}
    page = {
        "path": "/login",
        "url": "https://shop.example.com/login",
        "referrer": "",
        "title": "Log in",
    }
    return {"type": "identify", "traits": traits, "context": _browser_context(p.number, page)}


def _group(rng: random.Random, p: _Person) -> dict[str, Any]:
    assert p.account is not None
    return {
        "type": "group",
        "groupId": f"acct_{p.account:04d}",
        "traits": {
            "name": f"Account {p.account:04d}",
            "plan": rng.choice(_PLANS[2:]),
            "employees": rng.choice((5, 20, 80, 250, 1200)),
            "industry": rng.choice(_INDUSTRIES),
        },
        "context": {"library": _SERVER},
    }


def _fill_mix(storage: Storage, total: int) -> tuple[str, str]:
    return fill(storage, total, mix_chunk)


def fill_and_process(
    storage: Storage, total: int, postgres_server: str | None = None
) -> tuple[str, str]:
    """The mix, then the pipeline over all of it (as `cairn serve` would have run it)."""
    keys = _fill_mix(storage, total)
    assert isinstance(storage, SQLStorage)
    url = None
    if postgres_server is not None:
        name = storage.rows("SELECT current_database()")[0][0]
        url = f"{postgres_server.rpartition('/')[0]}/{name}"
    pipeline = Pipeline.from_settings(storage, Settings())
    started = time.monotonic()
    with autovacuum(url):
        while pipeline.run_until_idle(max_batches=200):
            rate = pipeline.processed / (time.monotonic() - started)
            done = f"{pipeline.processed:,} / {total:,} events ({rate:,.0f}/s)"
            print(f"  pipeline: {done}", flush=True)
    return keys


# PostgreSQL's autovacuum, done by the benchmark ---------------------------------------------------
_AUTOVACUUM_SECONDS = 10.0
# Tables past autovacuum's default thresholds: (name, whether to vacuum; else analyze only).
_DUE = """
SELECT relname, n_dead_tup > 50 + 0.2 * n_live_tup OR n_ins_since_vacuum > 1000 + 0.2 * n_live_tup
FROM pg_stat_user_tables
WHERE schemaname = 'public' AND (n_dead_tup > 50 + 0.2 * n_live_tup
   OR n_ins_since_vacuum > 1000 + 0.2 * n_live_tup OR n_mod_since_analyze > 50 + 0.1 * n_live_tup)
"""


@contextmanager
def autovacuum(url: str | None) -> Iterator[None]:
    """Autovacuum's work on the database at `url` (PostgreSQL; None: nothing) while the block runs.

    This machine's PostgreSQL runs with `autovacuum = off` (conf.d/90-ci.conf, for the tests), so a
    database the pipeline fills from nothing is planned with the statistics of empty tables, and
    lookups by index turn into scans. A production server analyzes and vacuums tables as they
    grow: here a thread does it every 10 s for tables past autovacuum's default thresholds, with
    its default cost-based throttling. A server that runs its own (bench/cluster.py's) is left to it."""
    if url is None or _server_autovacuums(url):
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_autovacuum, args=(url, stop), name="autovacuum", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _server_autovacuums(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return row is not None and row[0] == "on"


def _autovacuum(url: str, stop: threading.Event) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET vacuum_cost_delay = '2ms'")  # throttled as autovacuum's workers are
        while not stop.wait(_AUTOVACUUM_SECONDS):
            for name, vacuum in conn.execute(_DUE).fetchall():
                command = "VACUUM (ANALYZE, SKIP_LOCKED)" if vacuum else "ANALYZE (SKIP_LOCKED)"
                try:
                    conn.execute(f'{command} public."{name}"'.encode())
                except psycopg.Error as exc:  # a table dropped meanwhile: the next round
                    print(f"  autovacuum: {name}: {exc}", flush=True)


# 1. throughput ------------------------------------------------------------------------------------
@dataclass
class Throughput:
    backend: str
    events: int
    seconds: float
    cpu_seconds: float
    busy_seconds: float  # the whole machine's, over the run
    totals: Stats
    runs: list[float] = field(default_factory=list)  # events/s of every run (`--repeat`)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds

    @property
    def other_cores(self) -> float:
        return max(0.0, self.busy_seconds / self.seconds - self.cores)


def measure_throughput(backend: str, database: str, profile: Path | None) -> Throughput:
    """`run_until_idle` over a log nobody has processed, from a fresh cursor, in this process,
    with the runtime `cairn serve` gives its processes (`tune_runtime`: the GIL's switch interval
    matters to the pipeline's writer thread, which waits for the GIL after every statement)."""
    tune_runtime()
    storage = open_storage(database)
    try:
        assert isinstance(storage, SQLStorage)
        pipeline = Pipeline.from_settings(storage, Settings())
        assert pipeline.store.cursor().position == 0
        spy = _profiler(profile) if profile else None
        busy, cpu, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
        with autovacuum(database if storage.dialect == "postgres" else None):
            done = pipeline.run_until_idle()
        seconds = time.perf_counter() - started
        cpu, busy = time.process_time() - cpu, machine_busy_seconds() - busy
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
        if pipeline.status().lag_events != 0:
            raise RuntimeError(f"{backend}: the pipeline stopped short of the end of the log")
        result = Throughput(backend, done, seconds, cpu, busy, pipeline.totals)
    finally:
        storage.close()
    t = result.totals
    rate = f"{result.events_per_s:,.0f} events/s, {result.cores:.2f} cores"
    made = f"{t.persons_created:,} persons created, {t.merges:,} merges"
    print(f"  {backend}: {done:,} events in {seconds:.1f} s: {rate}; {made}", flush=True)
    return result


def _profiler(out: Path) -> subprocess.Popen[bytes]:
    """py-spy on this process (raw collapsed stacks, for bench/hotspots.py) until SIGINT."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [spy, "record", "--pid", str(os.getpid()), "--rate", "200", "--nonblocking"]
    args += ["--format", "raw", "--output", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the measured run starts
    return proc


def run_throughput_sqlite(options: Options) -> Throughput:
    prefilled = prefill_sqlite(options.events, kind=LOG_KIND, filler=_fill_mix)
    results = []
    for run in range(options.repeat):
        folder = copy_sqlite(prefilled, DATA / "run-pipeline-sqlite")
        try:
            profile = options.profile if run == 0 else None
            results.append(
                measure_throughput("sqlite", f"sqlite:///{folder / 'cairn.db'}", profile)
            )
        finally:
            shutil.rmtree(folder)
    return _median(results)


def run_throughput_postgres(options: Options) -> Throughput:
    url = options.postgres_url
    prefilled = prefill_postgres(url, options.events, kind=LOG_KIND, filler=_fill_mix)
    results = []
    for _ in range(options.repeat):
        copy = copy_postgres(prefilled, "cairn_bench_pipeline")
        try:
            results.append(measure_throughput(options.postgres_label, copy, None))
        finally:
            drop_postgres_copy(copy)
    return _median(results)


def _median(results: list[Throughput]) -> Throughput:
    """The run of median events/s (the lower middle of an even count), with every run's rate:
    this VM's speed drifts by up to a fifth from one minute to the next."""
    ordered = sorted(results, key=lambda r: r.events_per_s)
    middle = ordered[(len(ordered) - 1) // 2]
    middle.runs = [r.events_per_s for r in results]
    return middle


# 2. lag under load --------------------------------------------------------------------------------
@dataclass
class Lag:
    backend: str
    rate: float
    load: LoadResult
    usage: Usage
    seconds: list[float] = field(default_factory=list)  # lag_seconds, one sample each 100 ms
    events: list[int] = field(default_factory=list)  # lag_events
    drained_after: float | None = None  # seconds from the end of the load to lag 0
    processed: int = 0


def _quantile(values: list[float], q: float) -> float:
    """Nearest rank, as bench/loadgen.py does."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _sample(server: Server, token: str, lag: Lag, config: LoadConfig) -> None:
    """`GET /api/v1/pipeline` every 100 ms over the measured window (off the event loop)."""
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    measure_from, stop_at = begin + config.warmup, begin + config.warmup + config.duration
    while (now := time.perf_counter()) < stop_at:
        status = await loop.run_in_executor(None, server.get_json, "/api/v1/pipeline", token)
        if now >= measure_from:
            lag.seconds.append(float(status["lag_seconds"]))
            lag.events.append(int(status["lag_events"]))
        await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - now)))


async def _drive(server: Server, prefilled: Prefilled, lag: Lag, config: LoadConfig) -> None:
    target = Target("127.0.0.1", server.port, prefilled.write_key)
    lag.load, _, _ = await asyncio.gather(
        generate(target, config),
        _sample(server, prefilled.token, lag, config),
        watch(server.pid, config.warmup, config.duration, lag.usage),
    )


def _wait_idle(server: Server, token: str, timeout: float = 30.0) -> None:
    """Until the server's own pipeline holds the lease and has nothing left to do."""
    deadline = time.monotonic() + timeout
    while True:
        status = server.get_json("/api/v1/pipeline", token)
        if status["running_here"] and status["lag_events"] == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: the pipeline is not running or not idle: {status}")
        time.sleep(0.2)


def measure_lag(backend: str, server: Server, prefilled: Prefilled, options: Options) -> Lag:
    token = prefilled.token
    _wait_idle(server, token)
    config = LoadConfig(connections=16, duration=options.duration, warmup=3.0, rate=options.rate)
    seconds = config.warmup + config.duration
    print(f"  {backend}: {options.rate:,.0f} events/s for {seconds:.0f} s", flush=True)
    lag = Lag(backend, options.rate, LoadResult(config), Usage())
    # processed: how far the cursor moved (the HTTP worker that answers does not run the pipeline)
    before = int(server.get_json("/api/v1/pipeline", token)["cursor"])
    uvloop.run(_drive(server, prefilled, lag, config))
    ended = time.monotonic()
    while time.monotonic() - ended < 120:
        status = server.get_json("/api/v1/pipeline", token)
        if status["lag_events"] == 0:
            lag.drained_after = time.monotonic() - ended
            lag.processed = int(status["cursor"]) - before
            break
        time.sleep(0.05)
    print(f"  {backend}: lag {_spread(lag.seconds, 's', '.3f')}; {lag.load.accepted_events:,} "
          f"events accepted, {lag.processed:,} processed", flush=True)  # fmt: skip
    return lag


def _spread(values: list[float], unit: str, spec: str) -> str:
    p50, p95, p99 = (format(_quantile(values, q), spec) for q in (0.5, 0.95, 0.99))
    return f"p50 {p50} {unit}, p95 {p95} {unit}, p99 {p99} {unit}"


def _followers_caught_up(database: str) -> None:
    """As on a server that has been running, the automation engine has read the log as far as
    the pipeline (the processed database was built by the pipeline alone: without this the
    engine would spend the measured run catching up through the whole log, a page of 500 per
    step on the pipeline's thread). The engine's own steps, until it has nothing to do."""
    storage = open_storage(database)
    try:
        assert isinstance(storage, SQLStorage)
        engine = AutomationEngine(PeopleStore(storage))
        steps = 0
        while engine.step():
            steps += 1
        print(f"  automations caught up with the pipeline in {steps:,} steps", flush=True)
    finally:
        storage.close()


def run_lag_sqlite(options: Options) -> Lag:
    prefilled = _processed_sqlite(options)
    folder = copy_sqlite(prefilled, DATA / "run-pipeline-lag")
    _followers_caught_up(f"sqlite:///{folder / 'cairn.db'}")
    # as users run it: one HTTP worker per core and the pipeline in a process of its own
    server = start_cairn("cairn-pipeline-sqlite", data_dir=folder, workers=None)
    try:
        return measure_lag("sqlite", server, prefilled, options)
    finally:
        server.stop()
        shutil.rmtree(folder)


def run_lag_postgres(options: Options) -> Lag:
    prefilled = _processed_postgres(options)
    url = copy_postgres(prefilled, "cairn_bench_pipeline")
    _followers_caught_up(url)
    folder = DATA / "run-pipeline-lag-postgres"
    server = start_cairn("cairn-pipeline-postgres", data_dir=folder, database_url=url, workers=None)
    try:
        with autovacuum(url):
            return measure_lag(options.postgres_label, server, prefilled, options)
    finally:
        server.stop()
        drop_postgres_copy(url)
        shutil.rmtree(folder, ignore_errors=True)


# 3. timeline pages --------------------------------------------------------------------------------
@dataclass
class Pages:
    backend: str
    stored: int
    what: str
    ms: list[float] = field(default_factory=list)
    items: int = 0
    other_cores: float = 0.0  # what the rest of the machine used meanwhile


def _warm(storage: SQLStorage, database: str) -> None:
    """Read the whole database into the OS page cache, as a server that has been answering for a
    while would have it (this VM also reclaims idle page cache on its own: DAMON)."""
    if storage.dialect == "sqlite":
        with Path(database.removeprefix("sqlite:///")).open("rb") as handle:
            while handle.read(1 << 24):
                pass
        return
    with storage.transaction() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    storage.rows(
        "SELECT sum(pg_prewarm(c.oid::regclass, 'read')) FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')"
    )


def _time_page(store: PeopleStore, person: int, query: TimelineQuery, pages: Pages) -> str | None:
    started = time.perf_counter()
    page = person_timeline(store, person, query)
    pages.ms.append((time.perf_counter() - started) * 1000)
    pages.items += len(page["data"])
    cursor: str | None = page["next_cursor"]
    return cursor


def measure_timeline(backend: str, prefilled: Prefilled, samples: int) -> list[Pages]:
    """First pages of `samples` random persons; first and second pages (through the cursor) of
    `samples` / 4 random persons with more than a page of events, and of the 20 heaviest (five
    times each). After the database is read into the page cache and 200 other persons' pages."""
    storage = open_storage(prefilled.database)
    try:
        assert isinstance(storage, SQLStorage)
        _warm(storage, prefilled.database)
        store = PeopleStore(storage)
        people = store.rows("SELECT id, events FROM persons WHERE merged_into IS NULL")
        people.sort(key=lambda row: (-row[1], row[0]))
        heaviest = people[:20]
        rng = random.Random(7)
        chosen = [pid for pid, _ in rng.sample(people, min(len(people), samples + 200))]
        busy = [pid for pid, events in people[20:] if events > LIMIT]
        busy = rng.sample(busy, min(len(busy), samples // 4))
        stored = prefilled.events
        span = f"{heaviest[-1][1]:,} to {heaviest[0][1]:,} events"
        rows = [
            Pages(backend, stored, f"first page, {samples:,} random persons"),
            Pages(
                backend, stored, f"first page, {len(busy):,} random persons with > {LIMIT} events"
            ),
            Pages(backend, stored, f"first page, the 20 heaviest x5 ({span})"),
            Pages(backend, stored, "second page (cursor) of the last two"),
        ]
        warmup, first, first_busy, first_heavy, second = Pages(backend, stored, ""), *rows
        for person in chosen[:200]:
            _time_page(store, person, TimelineQuery(limit=LIMIT), warmup)
        machine, cpu, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
        for person in chosen[200:]:
            _time_page(store, person, TimelineQuery(limit=LIMIT), first)
        cursors: list[tuple[int, str]] = []
        for pages, persons in ((first_busy, busy), (first_heavy, [p for p, _ in heaviest] * 5)):
            for person in persons:
                if cursor := _time_page(store, person, TimelineQuery(limit=LIMIT), pages):
                    cursors.append((person, cursor))
        for person, cursor in cursors:
            _time_page(store, person, TimelineQuery.parse(limit=LIMIT, cursor=cursor), second)
        seconds = time.perf_counter() - started
        others = machine_busy_seconds() - machine - (time.process_time() - cpu)
    finally:
        storage.close()
    for pages in rows:
        pages.other_cores = max(0.0, others / seconds)
        print(f"  {backend}: {pages.what}: {_spread(pages.ms, 'ms', '.2f')}", flush=True)
    return rows


def _processed_sqlite(options: Options) -> Prefilled:
    """The cached SQLite database of the mix, processed by the pipeline."""
    total = options.timeline_events
    return prefill_sqlite(total, kind=PROCESSED_KIND, filler=fill_and_process)


def _processed_postgres(options: Options) -> Prefilled:
    url, total = options.postgres_url, options.timeline_events
    filler = functools.partial(fill_and_process, postgres_server=url)
    return prefill_postgres(url, total, kind=PROCESSED_KIND, filler=filler)


def run_timeline_sqlite(options: Options) -> list[Pages]:
    return measure_timeline("sqlite", _processed_sqlite(options), options.pages)


def run_timeline_postgres(options: Options) -> list[Pages]:
    return measure_timeline(options.postgres_label, _processed_postgres(options), options.pages)


# the table ----------------------------------------------------------------------------------------
def _verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def _throughput_table(rows: list[Throughput], markdown: bool) -> list[str]:
    lines = [["backend", "events", "seconds", "events/s", "target", "verdict", "process cores",
              "CPU µs/event", "other cores", "persons created", "merges",
              "every run, events/s"]]  # fmt: skip
    verdicts = []
    for r in rows:
        sqlite = r.backend == "sqlite"
        met = r.events_per_s >= TARGET_EVENTS_PER_S
        lines.append([
            r.backend, f"{r.events:,}", f"{r.seconds:.1f}", f"{r.events_per_s:,.0f}",
            "≥ 15,000" if sqlite else "-", _verdict(met) if sqlite else "-", f"{r.cores:.2f}",
            f"{r.cpu_seconds * 1e6 / r.events:.0f}", f"{r.other_cores:.2f}",
            f"{r.totals.persons_created:,}", f"{r.totals.merges:,}",
            " / ".join(f"{rate:,.0f}" for rate in r.runs),
        ])  # fmt: skip
        if sqlite:
            verdicts.append(f"{_verdict(met):6} pipeline throughput on SQLite ≥ 15,000 events/s "
                            f"per worker ({r.events_per_s:,.0f})")  # fmt: skip
    print(table(lines, markdown))
    return verdicts


def _lag_table(rows: list[Lag], markdown: bool) -> list[str]:
    lines = [["backend", "rate ev/s", "samples", "lag p50 s", "lag p95 s", "lag max s",
              "target", "verdict", "lag events p95", "lag events max", "drained after s",
              "ingest p99 ms", "server cores", "other cores", "accepted"]]  # fmt: skip
    verdicts = []
    for r in rows:
        p95 = _quantile(r.seconds, 0.95)
        met = p95 < TARGET_LAG_P95_S
        drained = "-" if r.drained_after is None else f"{r.drained_after:.2f}"
        lines.append([
            r.backend, f"{r.rate:,.0f}", f"{len(r.seconds)}", f"{_quantile(r.seconds, 0.5):.3f}",
            f"{p95:.3f}", f"{max(r.seconds, default=0.0):.3f}", "p95 < 1 s", _verdict(met),
            f"{_quantile([float(e) for e in r.events], 0.95):,.0f}",
            f"{max(r.events, default=0):,}", drained,
            f"{r.load.percentile(0.99) * 1000:.1f}", f"{r.usage.server_cores:.2f}",
            f"{r.usage.other_cores:.2f}", f"{r.load.accepted_events:,}",
        ])  # fmt: skip
        verdicts.append(f"{_verdict(met):6} pipeline lag p95 < 1 s at {r.rate:,.0f} events/s on "
                        f"{r.backend} ({p95:.3f} s)")  # fmt: skip
    print(table(lines, markdown))
    return verdicts


def _timeline_table(rows: list[Pages], markdown: bool) -> list[str]:
    lines = [["backend", "events stored", "pages", "p50 ms", "p95 ms", "p99 ms", "max ms",
              "target", "verdict", "items/page", "other cores", "query"]]  # fmt: skip
    verdicts = []
    for r in rows:
        p95 = _quantile(r.ms, 0.95)
        met = p95 <= TARGET_PAGE_P95_MS
        lines.append([
            r.backend, f"{r.stored:,}", f"{len(r.ms):,}", f"{_quantile(r.ms, 0.5):.2f}",
            f"{p95:.2f}", f"{_quantile(r.ms, 0.99):.2f}", f"{max(r.ms, default=0.0):.2f}",
            "p95 ≤ 10 ms", _verdict(met), f"{r.items / max(len(r.ms), 1):.1f}",
            f"{r.other_cores:.2f}", r.what,
        ])  # fmt: skip
        verdicts.append(f"{_verdict(met):6} timeline page p95 ≤ 10 ms on {r.backend}, {r.what} "
                        f"({p95:.2f} ms)")  # fmt: skip
    print(table(lines, markdown))
    return verdicts


def print_report(
    throughput: list[Throughput], lag: list[Lag], pages: list[Pages], notes: list[str],
    markdown: bool,
) -> None:  # fmt: skip
    verdicts: list[str] = []
    print()
    if throughput:
        print("Pipeline throughput, one worker in process, from a fresh cursor:")
        verdicts += _throughput_table(throughput, markdown)
        print()
    if lag:
        print(
            "Pipeline lag while `cairn serve` takes a steady load (GET /api/v1/pipeline / 100 ms):"
        )
        verdicts += _lag_table(lag, markdown)
        print()
    if pages:
        print(f"Timeline pages (person_timeline, limit {LIMIT}), in process:")
        verdicts += _timeline_table(pages, markdown)
        print()
    for line in notes:
        print(line)
    for line in verdicts:
        print(line)


# running it ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    events: int
    timeline_events: int
    duration: float
    rate: float
    pages: int
    only: tuple[str, ...]
    backends: tuple[str, ...]
    postgres_url: str
    postgres_label: str  # "postgres", or "postgres-tuned" on bench/cluster.py's cluster
    markdown: bool
    profile: Path | None
    repeat: int


def _arguments() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events of the throughput log (500,000)")
    parser.add_argument(
        "--timeline-events", type=int, help="events of the processed database (1,000,000)"
    )
    parser.add_argument("--duration", type=float, help="measured seconds of the lag row (30)")
    parser.add_argument("--rate", type=float, default=5_000.0, help="events/s of the lag row")
    parser.add_argument("--pages", type=int, help="random persons whose pages are timed (2,000)")
    parser.add_argument("--quick", action="store_true",
                        help="300,000-event databases, 10 s lag row: a smoke run")  # fmt: skip
    parser.add_argument("--only", action="append", choices=["throughput", "lag", "timeline"],
                        help="run only these measurements (repeatable)")  # fmt: skip
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"],
                        help="run only on these backends (repeatable)")  # fmt: skip
    add_postgres_arguments(parser)
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--profile", type=Path,
                        help="py-spy raw stacks of the SQLite throughput run here")  # fmt: skip
    parser.add_argument("--repeat", type=int,
                        help="runs of each throughput row; the median is reported (3)")  # fmt: skip
    args = parser.parse_args()
    server = postgres_server(args) if "postgres" in (args.backend or ("postgres",)) else None
    return Options(
        events=args.events or (300_000 if args.quick else 500_000),
        timeline_events=args.timeline_events or (300_000 if args.quick else 1_000_000),
        duration=args.duration or (10.0 if args.quick else 30.0),
        rate=args.rate,
        pages=args.pages or (500 if args.quick else 2_000),
        only=tuple(args.only or ("throughput", "lag", "timeline")),
        backends=tuple(args.backend or ("sqlite", "postgres")),
        postgres_url=server.url if server else args.postgres_url,
        postgres_label=server.label if server else "postgres",
        markdown=args.markdown,
        profile=args.profile,
        repeat=max(1, args.repeat or (1 if args.quick else 3)),
    )


def main() -> None:
    options = _arguments()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} before the run", flush=True)  # fmt: skip
    backends = list(options.backends)
    notes: list[str] = []
    if "postgres" in backends and (reason := postgres_unavailable(options.postgres_url)):
        backends.remove("postgres")
        notes.append(f"postgres: skipped, {reason}")
    throughput: list[Throughput] = []
    lag: list[Lag] = []
    pages: list[Pages] = []
    runs: dict[tuple[str, str], Callable[[], None]] = {
        ("throughput", "sqlite"): lambda: throughput.append(run_throughput_sqlite(options)),
        ("throughput", "postgres"): lambda: throughput.append(run_throughput_postgres(options)),
        ("timeline", "sqlite"): lambda: pages.extend(run_timeline_sqlite(options)),
        ("timeline", "postgres"): lambda: pages.extend(run_timeline_postgres(options)),
        ("lag", "sqlite"): lambda: lag.append(run_lag_sqlite(options)),
        ("lag", "postgres"): lambda: lag.append(run_lag_postgres(options)),
    }
    for (measurement, backend), run in runs.items():
        if measurement in options.only and backend in backends:
            print(f"{measurement} on {backend}", flush=True)
            run()
    notes.append(f"load average {os.getloadavg()[0]:.2f} after the run")
    print_report(throughput, lag, pages, notes, options.markdown)


if __name__ == "__main__":
    main()
