"""A Cairn database holding millions of events before the benchmark measures anything.

Events go through the collector's own `normalize` and the storage layer's `append`, 50,000 to a
transaction, with timestamps rising over the last 30 days, 100,000 distinct users and random
`messageId`s. Messages are normalized in worker processes while the main process writes.

Prefilled databases are cached and reused: SQLite files under `bench/.data/`, PostgreSQL databases
named `cairn_bench_<count>_<schema>`. The key holds the event count and a hash of the migrations,
so a schema change builds a new one. Each benchmark run works on a copy (see `copy_sqlite`,
`copy_postgres`), so every run starts from the same state. Other benchmarks cache their own kinds
of database the same way: `prefill_sqlite` and `prefill_postgres` take a `kind` (part of the key)
and a `filler` that fills the new database (`fill` with another chunk maker; see bench/pipeline.py).
Alone: `python bench/prefill.py --events 5000000 [--database-url postgresql://...]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec

from cairn.ingest.messages import EventRecord, RequestInfo, normalize
from cairn.storage.base import Storage, migration_scripts, open_storage
from cairn.workspaces import bootstrap
from events import USERS, format_ms, track_message

__all__ = [
    "DATA",
    "ChunkMaker",
    "Filler",
    "Prefilled",
    "copy_postgres",
    "copy_sqlite",
    "drop_postgres_copy",
    "fill",
    "normalized_chunk",
    "prefill_postgres",
    "prefill_sqlite",
]

DATA = Path(__file__).parent / ".data"
_CHUNK = 50_000
_BATCH = 100
_SPAN_MS = 30 * 24 * 3_600_000
_IN_FLIGHT = 4

# (first, count, total, start_ms, workspace id, source id) -> normalized records as msgpack; run in
# worker processes, so a module-level function.
ChunkMaker = Callable[[int, int, int, int, int, str], bytes]
# Fills a new, migrated database with `total` events: (write key, admin token).
Filler = Callable[[Storage, int], tuple[str, str]]


@dataclass(frozen=True)
class Prefilled:
    """A prefilled database and the credentials `bootstrap` made for it."""

    database: str  # sqlite:///... or postgresql://...
    events: int
    schema: str
    write_key: str
    token: str
    seconds: float


def schema_key(dialect: str) -> str:
    """`v<latest migration>-<hash of every migration>`: a new schema means a new prefill."""
    scripts = migration_scripts(dialect)
    digest = hashlib.sha1("".join(sql for _, sql in scripts).encode()).hexdigest()[:8]
    return f"v{scripts[-1][0]}-{digest}"


def _chunk(first: int, count: int, total: int, start_ms: int, workspace: int, source: str) -> bytes:
    """Events `first` to `first + count` of `total`, normalized, as msgpack."""
    rng = random.Random(first)
    messages = [track_message(rng, rng.randrange(USERS), "", "") for _ in range(count)]
    return normalized_chunk(messages, first, total, start_ms, workspace, source, rng)


def normalized_chunk(
    messages: list[dict[str, object]],
    first: int,
    total: int,
    start_ms: int,
    workspace: int,
    source: str,
    rng: random.Random,
) -> bytes:
    """`messages` as log positions `first`, `first + 1`, ... of `total`, as msgpack records.

    Each gets its position's time (rising over the 30 days after `start_ms`) and a random
    `messageId`, and goes through the collector's `normalize` in requests of 100 with `sentAt`."""
    step = _SPAN_MS / total
    records: list[EventRecord] = []
    for offset in range(0, len(messages), _BATCH):
        batch = messages[offset : offset + _BATCH]
        times = [start_ms + int((first + offset + i) * step) for i in range(len(batch))]
        sent = times[-1] + rng.randint(50, 2000)
        info = RequestInfo(workspace, source, sent + rng.randint(5, 80), sent_at=format_ms(sent))
        for i, (raw, at) in enumerate(zip(batch, times, strict=True)):
            raw["timestamp"] = format_ms(at)
            raw["messageId"] = _message_id(rng)
            record = normalize(raw, i, info)
            assert isinstance(record, EventRecord), record
            records.append(record)
    return msgspec.msgpack.encode(records)


def _message_id(rng: random.Random) -> str:
    raw = f"{rng.getrandbits(128):032x}"
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{raw[16:20]}-{raw[20:]}"


def _chunks(
    total: int, workspace: int, source: str, chunk: ChunkMaker
) -> Iterator[list[EventRecord]]:
    """Every chunk in order, made by a process pool a few chunks ahead of the writer."""
    start_ms = int(time.time() * 1000) - _SPAN_MS - 3_600_000
    decode = msgspec.msgpack.Decoder(list[EventRecord]).decode
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        pending: list[Future[bytes]] = []
        for first in range(0, total, _CHUNK):
            count = min(_CHUNK, total - first)
            pending.append(pool.submit(chunk, first, count, total, start_ms, workspace, source))
            if len(pending) >= _IN_FLIGHT:
                yield decode(pending.pop(0).result())
        for future in pending:
            yield decode(future.result())


def fill(storage: Storage, total: int, chunk: ChunkMaker = _chunk) -> tuple[str, str]:
    """Bootstrap a new database and append `total` events made by `chunk`; (write key, token)."""
    first = bootstrap(storage)
    if first is None:
        raise RuntimeError("the database to prefill is not empty")
    started = time.monotonic()
    stored = 0
    for records in _chunks(total, first.workspace.id, first.source.id, chunk):
        result = storage.append(records, [])
        stored += result.inserted
        _progress(stored, total, started)
    if stored != total:
        raise RuntimeError(f"prefill stored {stored:,} of {total:,} events")
    return first.source.write_key, first.token


def _progress(done: int, total: int, started: float) -> None:
    if done % 500_000 < _CHUNK or done == total:
        rate = done / max(time.monotonic() - started, 1e-9)
        print(f"  prefill: {done:,} / {total:,} events ({rate:,.0f}/s)", flush=True)


def _load(meta: Path) -> Prefilled | None:
    if not meta.exists():
        return None
    return Prefilled(**json.loads(meta.read_text()))


def _save(meta: Path, prefilled: Prefilled) -> Prefilled:
    meta.write_text(json.dumps(asdict(prefilled), indent=2) + "\n")
    return prefilled


def prefill_sqlite(total: int, *, kind: str = "sqlite", filler: Filler = fill) -> Prefilled:
    """The cached SQLite database of `kind` with `total` events, made by `filler` when missing."""
    schema = schema_key("sqlite")
    folder = DATA / f"{kind}-{total}-{schema}"
    meta = folder / "bench.json"
    if (cached := _load(meta)) is not None:
        return cached
    _drop_stale_sqlite(kind, schema)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"prefilling SQLite with {total:,} events into {folder} (once; cached)", flush=True)
    started = time.monotonic()
    database = f"sqlite:///{folder / 'cairn.db'}"
    storage = open_storage(database, synchronous="OFF")
    try:
        write_key, token = filler(storage, total)
    finally:
        storage.close()  # the last connection to close checkpoints and removes the WAL
    seconds = time.monotonic() - started
    return _save(meta, Prefilled(database, total, schema, write_key, token, seconds))


def _drop_stale_sqlite(kind: str, schema: str) -> None:
    """Remove cached SQLite databases made for another schema: they can never be used again."""
    for folder in DATA.glob(f"{kind}-[0-9]*-*"):
        if not folder.name.endswith(f"-{schema}"):
            print(f"removing {folder.name}: made for an older schema", flush=True)
            shutil.rmtree(folder, ignore_errors=True)


def copy_sqlite(prefilled: Prefilled, folder: Path) -> Path:
    """A fresh copy of a prefilled SQLite database in `folder` (the data dir for `cairn serve`).

    Synced to disk before it is used, so the kernel's writeback of gigabytes of copied pages does
    not compete with the measured run's fsyncs.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = Path(prefilled.database.removeprefix("sqlite:///"))
    copy = folder / "cairn.db"
    shutil.copyfile(source, copy)
    with copy.open("rb") as handle:
        os.fsync(handle.fileno())
    return folder


def _admin(url: str) -> tuple[str, str]:
    """(server URL on the `postgres` database, the database name) of a PostgreSQL URL."""
    base, _, name = url.rpartition("/")
    return f"{base}/postgres", name.split("?")[0]


def _pg_execute(url: str, *statements: str, on_server: bool = True) -> list[tuple[object, ...]]:
    """Run `statements` outside a transaction, on the `postgres` database or on `url`'s own."""
    import psycopg

    with psycopg.connect(_admin(url)[0] if on_server else url, autocommit=True) as conn:
        rows: list[tuple[object, ...]] = []
        for statement in statements:
            cursor = conn.execute(statement.encode())
            rows = cursor.fetchall() if cursor.description else []
        return rows


def _pg_exists(server_url: str, name: str) -> bool:
    rows = _pg_execute(server_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    return bool(rows)


def prefill_postgres(
    server_url: str, total: int, *, kind: str = "bench", filler: Filler = fill
) -> Prefilled:
    """The cached PostgreSQL database of `kind` with `total` events (on the server of
    `server_url`), made by `filler` when missing."""
    schema = schema_key("postgres")
    name = f"cairn_{kind}_{total}_{schema.replace('-', '_')}"
    meta = _meta_folder(server_url) / f"postgres-{_meta_kind(kind)}{total}-{schema}.json"
    base = server_url.rpartition("/")[0]
    cached = _load(meta)
    if cached is not None and _pg_exists(server_url, name):
        return cached
    _drop_stale_postgres(server_url, kind, schema)
    print(f"prefilling PostgreSQL database {name} with {total:,} events (once; cached)", flush=True)
    _pg_execute(server_url, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    started = time.monotonic()
    database = f"{base}/{name}"
    storage = open_storage(database)
    try:
        write_key, token = filler(storage, total)
    finally:
        storage.close()
    _pg_execute(database, "VACUUM ANALYZE", on_server=False)
    seconds = time.monotonic() - started
    meta.parent.mkdir(parents=True, exist_ok=True)
    return _save(meta, Prefilled(database, total, schema, write_key, token, seconds))


def _meta_folder(server_url: str) -> Path:
    """Where the credentials of a server's cached databases are kept: `bench/.data` for the
    machine's server on port 5432, a folder per port for others (bench/cluster.py's), so the two
    servers' databases of one kind and schema do not take each other's credentials."""
    port = _port(server_url)
    return DATA if port == 5432 else DATA / f"postgres-port-{port}"


def _port(url: str) -> int:
    """The port of a PostgreSQL URL (5432 when it names none)."""
    from psycopg.conninfo import conninfo_to_dict

    return int(conninfo_to_dict(url).get("port") or 5432)


def _meta_kind(kind: str) -> str:
    """The credentials file's infix: none for the ingest prefill (its names predate kinds)."""
    return "" if kind == "bench" else f"{kind}-"


def _drop_stale_postgres(server_url: str, kind: str, schema: str) -> None:
    """Drop cached PostgreSQL databases of `kind` made for another schema, and their credentials."""
    suffix = schema.replace("-", "_")
    rows = _pg_execute(
        server_url, f"SELECT datname FROM pg_database WHERE datname ~ '^cairn_{kind}_[0-9]+_'"
    )
    for (name,) in rows:
        if not str(name).endswith(suffix):
            print(f"dropping {name}: made for an older schema", flush=True)
            _pg_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for meta in _meta_folder(server_url).glob(f"postgres-{_meta_kind(kind)}[0-9]*.json"):
        if not meta.name.endswith(f"-{schema}.json"):
            meta.unlink()


def copy_postgres(prefilled: Prefilled, name: str = "cairn_bench") -> str:
    """A fresh copy of a prefilled PostgreSQL database, named `name`; its URL."""
    _, template = _admin(prefilled.database)
    _pg_execute(
        prefilled.database,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY',
    )
    return f"{prefilled.database.rpartition('/')[0]}/{name}"


def drop_postgres_copy(url: str) -> None:
    _pg_execute(url, f'DROP DATABASE IF EXISTS "{_admin(url)[1]}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--database-url", help="postgresql://... (default: SQLite)")
    args = parser.parse_args()
    if args.database_url:
        prefilled = prefill_postgres(args.database_url, args.events)
    else:
        prefilled = prefill_sqlite(args.events)
    print(json.dumps(asdict(prefilled), indent=2))


if __name__ == "__main__":
    main()
