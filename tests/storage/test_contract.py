"""The storage contract: every backend passes the same tests (see `conftest.py` for the backends)."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.errors import Conflict, NotFound
from cairn.ingest.messages import EventRecord, RejectedRecord
from cairn.log.writer import LogWriter
from cairn.storage.base import EventQuery, LogEntry, Storage
from cairn.storage.postgres import PostgresStorage
from cairn.storage.sqlite import SQLiteStorage
from tests.storage.conftest import OpenStorage

ODD_TEXT = [
    "👩🏽‍💻 🏳️‍🌈 emoji with ZWJ",
    "שלום עולם",
    "مرحبا بالعالم",
    "e\u0301 vs \u00e9, a\u0308\u0323 stacked marks",
    "\u202eright-to-left override\u202c",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP",  # noqa: RUF001 (look-alike letters on purpose)
    "\ufeffBOM, tab\t, newline\n",
    "'; DROP TABLE events; -- %s %(x)s ? :1 $1",
]


def event(
    message_id: str,
    *,
    workspace: int = 1,
    bucket: int = 1,
    type: str = "track",
    name: str | None = "Thing Happened",
    user_id: str | None = "u1",
    anonymous_id: str | None = None,
    source_id: str = "src-1",
    body: bytes | None = None,
) -> EventRecord:
    return EventRecord(
        workspace_id=workspace,
        source_id=source_id,
        message_id=message_id,
        dedupe_bucket=bucket,
        type=type,
        event=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp_ms=1_700_000_000_000,
        received_ms=1_700_000_000_123,
        body=body if body is not None else f'{{"messageId":"{message_id}"}}'.encode(),
    )


def rejection(n: int, *, workspace: int = 1) -> RejectedRecord:
    return RejectedRecord(workspace, "src-1", 1_700_000_000_000 + n, "invalid", f"no {n}", b"{}")


def ids(entries: list[LogEntry]) -> list[str]:
    return [e.message_id for e in entries]


def append(storage: Storage, *events: EventRecord) -> None:
    storage.append(events, [])


# lifecycle ----------------------------------------------------------------------------------
def test_migrate_is_idempotent(storage: Storage) -> None:
    version = storage.migrate()
    append(storage, event("m1"))
    assert version >= 1
    assert storage.migrate() == version
    assert ids(storage.read_log(0, 10)) == ["m1"]


def test_concurrent_opens_migrate_once(open_storage: OpenStorage) -> None:
    stores = [open_storage() for _ in range(4)]
    start = threading.Barrier(len(stores))
    versions: list[int] = []

    def migrate(store: Storage) -> None:
        start.wait()
        versions.append(store.migrate())

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(versions) == 4
    assert len(set(versions)) == 1
    append(stores[0], event("m1"))
    assert ids(stores[3].read_log(0, 10)) == ["m1"]


# the log ------------------------------------------------------------------------------------
def test_append_then_read_log_in_order(storage: Storage) -> None:
    records = [event("m1"), event("m2", workspace=2, anonymous_id="a2", user_id=None, name=None)]
    result = storage.append(records, [])
    entries = storage.read_log(0, 10)
    assert result.inserted == 2
    assert result.duplicates == 0
    assert result.last_seq == entries[-1].seq == storage.last_seq()
    assert ids(entries) == ["m1", "m2"]
    second = entries[1]
    assert (second.workspace_id, second.source_id, second.type) == (2, "src-1", "track")
    assert (second.event, second.user_id, second.anonymous_id) == (None, None, "a2")
    assert (second.timestamp_ms, second.received_ms) == (1_700_000_000_000, 1_700_000_000_123)
    assert second.body == b'{"messageId":"m2"}'


@pytest.mark.parametrize("size", [1023, 1024, 1025, 2_500])
def test_large_appends_keep_every_event_in_order_across_statements(
    storage: Storage, size: int
) -> None:
    # SQLite inserts in multi-row statements of up to 1,024 rows, then powers of two: every
    # boundary keeps order, counts and dedupe (a duplicate in another statement of the same call).
    records = [event(f"big-{i}", body=b"%d" % i) for i in range(size)]
    records.insert(size // 2, event("big-0", body=b"again"))
    result = storage.append(records, [])
    assert (result.inserted, result.duplicates) == (size, 1)
    entries = storage.read_log(0, size + 10)
    assert ids(entries) == [f"big-{i}" for i in range(size)]
    assert [e.body for e in entries] == [b"%d" % i for i in range(size)]
    assert storage.count_events(1) == size
    assert result.last_seq == entries[-1].seq == storage.last_seq()
    # A commit that ends with duplicates reports the log's end all the same.
    again = storage.append([event("new-one"), *records[-3:]], [])
    assert (again.inserted, again.last_seq) == (1, storage.last_seq())


def test_seq_increases_across_appends(storage: Storage) -> None:
    assert storage.last_seq() == 0
    last = 0
    for n in range(5):
        result = storage.append([event(f"m{n}-{i}") for i in range(3)], [])
        assert result.last_seq > last
        last = result.last_seq
    seqs = [e.seq for e in storage.read_log(0, 100)]
    assert seqs == sorted(set(seqs))
    assert len(seqs) == 15
    assert seqs[-1] == storage.last_seq() == last


def test_duplicates_are_dropped_within_and_across_calls(storage: Storage) -> None:
    first = storage.append([event("a", body=b"1"), event("b"), event("a", body=b"2")], [])
    again = storage.append([event("b"), event("c"), event("c")], [])
    assert (first.inserted, first.duplicates) == (2, 1)
    assert (again.inserted, again.duplicates) == (1, 2)
    entries = storage.read_log(0, 10)
    assert ids(entries) == ["a", "b", "c"]
    assert entries[0].body == b"1", "the first copy is the one kept"
    assert storage.count_events(1) == 3


def test_dedupe_key_is_workspace_bucket_and_message_id(storage: Storage) -> None:
    result = storage.append(
        [event("m"), event("m", workspace=2), event("m", bucket=2), event("m", bucket=-1)], []
    )
    assert (result.inserted, result.duplicates) == (4, 0)
    assert storage.append([event("m", workspace=2, bucket=2)], []).inserted == 1
    assert storage.append([event("m", bucket=-1)], []).duplicates == 1


def test_all_duplicates_report_the_current_last_seq(storage: Storage) -> None:
    last = storage.append([event("a"), event("b")], []).last_seq
    result = storage.append([event("a"), event("b")], [])
    assert result == type(result)(inserted=0, duplicates=2, last_seq=last)
    assert storage.append([], []).last_seq == last


def test_rejected_only_append(storage: Storage) -> None:
    result = storage.append([], [rejection(1), rejection(2)])
    assert (result.inserted, result.duplicates, result.last_seq) == (0, 0, 0)
    assert [r.message for r in storage.list_rejected(1, before_id=None, limit=10)] == [
        "no 2",
        "no 1",
    ]


def test_read_log_after_and_limit(storage: Storage) -> None:
    storage.append([event(f"m{i}", workspace=1 + i % 2) for i in range(10)], [])
    everything = storage.read_log(0, 100)
    assert ids(storage.read_log(0, 3)) == ["m0", "m1", "m2"]
    assert ids(storage.read_log(everything[2].seq, 3)) == ["m3", "m4", "m5"]
    assert storage.read_log(everything[-1].seq, 10) == []


def test_bodies_are_bytes_exactly(storage: Storage) -> None:
    raw = bytes(range(256)) + b"\x00\x00" + "🎉".encode()
    append(storage, event("bin", body=raw), event("empty", body=b""))
    assert [e.body for e in storage.read_log(0, 10)] == [raw, b""]


# queries ------------------------------------------------------------------------------------
@pytest.fixture
def mixed(storage: Storage) -> Storage:
    """Ten events in workspace 1 (m0..m9) of varied type, name, ids and source; two elsewhere."""
    records = [
        event(f"m{i}", type=("track", "identify")[i % 2], name=f"E{i % 3}", user_id=f"u{i % 4}",
              anonymous_id=f"a{i % 5}", source_id=f"s{i % 2}")
        for i in range(10)
    ]  # fmt: skip
    storage.append(records, [])
    storage.append([event("x0", workspace=2), event("x1", workspace=2, user_id="u0")], [])
    return storage


def test_query_events_newest_first(mixed: Storage) -> None:
    assert ids(mixed.query_events(1, EventQuery())) == [f"m{i}" for i in reversed(range(10))]
    assert ids(mixed.query_events(1, EventQuery(limit=2))) == ["m9", "m8"]
    assert mixed.count_events(1) == 10
    assert mixed.count_events(2) == 2
    assert mixed.count_events(3) == 0


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("type", "identify", ["m9", "m7", "m5", "m3", "m1"]),
        ("event", "E1", ["m7", "m4", "m1"]),
        ("user_id", "u0", ["m8", "m4", "m0"]),
        ("anonymous_id", "a3", ["m8", "m3"]),
        ("source_id", "s0", ["m8", "m6", "m4", "m2", "m0"]),
        ("event", "nothing", []),
    ],
)
def test_query_events_filters(mixed: Storage, field: str, value: str, expected: list[str]) -> None:
    assert ids(mixed.query_events(1, replace(EventQuery(), **{field: value}))) == expected


def test_query_events_combines_filters(mixed: Storage) -> None:
    query = EventQuery(type="track", user_id="u0", anonymous_id="a3")
    assert ids(mixed.query_events(1, query)) == ["m8"]


def test_query_events_pages_towards_older(mixed: Storage) -> None:
    pages: list[list[str]] = []
    before = None
    while page := mixed.query_events(1, EventQuery(limit=4, before_seq=before)):
        pages.append(ids(page))
        before = page[-1].seq
    assert pages == [["m9", "m8", "m7", "m6"], ["m5", "m4", "m3", "m2"], ["m1", "m0"]]


def test_query_events_pages_towards_newer(mixed: Storage) -> None:
    pages: list[list[str]] = []
    after = 0
    while page := mixed.query_events(1, EventQuery(limit=4, after_seq=after)):
        pages.append(ids(page))
        after = page[0].seq
    assert pages == [["m3", "m2", "m1", "m0"], ["m7", "m6", "m5", "m4"], ["m9", "m8"]]


def test_query_events_between_bounds(mixed: Storage) -> None:
    seqs = {e.message_id: e.seq for e in mixed.read_log(0, 100)}
    query = EventQuery(limit=2, after_seq=seqs["m2"], before_seq=seqs["m7"], type="track")
    assert ids(mixed.query_events(1, query)) == ["m6", "m4"]


def test_workspaces_never_see_each_other(mixed: Storage) -> None:
    assert ids(mixed.query_events(2, EventQuery())) == ["x1", "x0"]
    assert ids(mixed.query_events(2, EventQuery(user_id="u0"))) == ["x1"]
    assert mixed.query_events(3, EventQuery()) == []
    mixed.append([], [rejection(1, workspace=2)])
    assert mixed.list_rejected(1, before_id=None, limit=10) == []
    one, two = mixed.create_workspace("one"), mixed.create_workspace("two")
    mixed.create_source(one.id, "web", "src-a", "key-a")
    mixed.create_token(one.id, "tok-a", "hash-a", "admin")
    assert mixed.list_sources(two.id) == []
    assert mixed.token_by_hash("hash-a") is not None
    assert mixed.token_by_hash("hash-a").workspace_id == one.id  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        mixed.set_source_enabled(two.id, "src-a", False)
    assert mixed.source_by_write_key("key-a").enabled  # type: ignore[union-attr]


# rejected and cursors -----------------------------------------------------------------------
def test_rejected_newest_first_with_pagination(storage: Storage) -> None:
    storage.append([event("ok")], [rejection(n) for n in range(5)])
    storage.append([], [rejection(5), rejection(9, workspace=2)])
    first = storage.list_rejected(1, before_id=None, limit=4)
    rest = storage.list_rejected(1, before_id=first[-1].id, limit=4)
    assert [r.message for r in first] == ["no 5", "no 4", "no 3", "no 2"]
    assert [r.message for r in rest] == ["no 1", "no 0"]
    assert (rest[0].workspace_id, rest[0].source_id, rest[0].code) == (1, "src-1", "invalid")
    assert (rest[0].received_ms, rest[0].body) == (1_700_000_000_001, b"{}")
    assert [r.message for r in storage.list_rejected(2, before_id=None, limit=10)] == ["no 9"]


def test_cursors(storage: Storage) -> None:
    assert storage.get_cursor("identity") == 0
    storage.commit_cursor("identity", 41)
    storage.commit_cursor("identity", 42)
    storage.commit_cursor("profiles", 7)
    assert (storage.get_cursor("identity"), storage.get_cursor("profiles")) == (42, 7)


# workspaces, sources, tokens ----------------------------------------------------------------
def test_workspaces(storage: Storage) -> None:
    first, second = storage.create_workspace("acme"), storage.create_workspace("globex")
    assert first.name == "acme"
    assert first.id != second.id
    assert first.created_ms > 1_600_000_000_000
    assert storage.workspace_by_name("acme") == first
    assert storage.workspace_by_id(second.id) == second
    assert storage.workspace_by_name("nope") is None
    assert storage.workspace_by_id(999) is None
    assert storage.list_workspaces() == [first, second]
    with pytest.raises(Conflict):
        storage.create_workspace("acme")


def test_sources(storage: Storage) -> None:
    one, two = storage.create_workspace("one"), storage.create_workspace("two")
    web = storage.create_source(one.id, "web", "src-w", "key-w")
    app = storage.create_source(one.id, "app", "src-a", "key-a")
    other = storage.create_source(two.id, "web", "src-o", "key-o")
    assert (web.workspace_id, web.name, web.write_key, web.enabled) == (
        one.id,
        "web",
        "key-w",
        True,
    )
    assert sorted(s.name for s in storage.list_sources(one.id)) == ["app", "web"]
    listed = storage.list_sources(one.id)
    assert listed == sorted(listed, key=lambda s: (s.created_ms, s.id))
    assert storage.list_sources(two.id) == [other]
    assert storage.source_by_write_key("key-a") == app
    assert storage.source_by_write_key("key-x") is None
    disabled = storage.set_source_enabled(one.id, "src-w", False)
    assert disabled == msgspec.structs.replace(web, enabled=False)
    assert storage.source_by_write_key("key-w") == disabled
    assert storage.set_source_enabled(one.id, "src-w", True).enabled


@pytest.mark.parametrize(
    ("name", "source_id", "write_key"),
    [("web", "src-new", "key-new"), ("new", "src-w", "key-new"), ("new", "src-new", "key-w")],
    ids=["name", "id", "write-key"],
)
def test_source_conflicts(storage: Storage, name: str, source_id: str, write_key: str) -> None:
    ws = storage.create_workspace("one")
    storage.create_source(ws.id, "web", "src-w", "key-w")
    with pytest.raises(Conflict):
        storage.create_source(ws.id, name, source_id, write_key)
    assert len(storage.list_sources(ws.id)) == 1


def test_unknown_source_is_not_found(storage: Storage) -> None:
    ws = storage.create_workspace("one")
    with pytest.raises(NotFound):
        storage.set_source_enabled(ws.id, "src-nope", False)


def test_tokens(storage: Storage) -> None:
    ws = storage.create_workspace("one")
    token = storage.create_token(ws.id, "tok-1", "hash-1", "ci")
    assert (token.id, token.workspace_id, token.label) == ("tok-1", ws.id, "ci")
    assert storage.token_by_hash("hash-1") == token
    assert storage.token_by_hash("hash-2") is None


# concurrency --------------------------------------------------------------------------------
def test_log_writer_threads_lose_nothing(storage: Storage) -> None:
    writer = LogWriter(storage, max_rows=200)
    writer.start()
    sent: dict[int, list[str]] = {k: [] for k in range(8)}

    def client(k: int) -> None:
        for j in range(8):
            batch = [f"m{(k * 37 + j * 11 + i) % 300}" for i in range(25)]
            sent[k].extend(batch)
            writer.append_sync([event(m, workspace=1 + k % 2) for m in batch])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.stop()
    stored = [(e.workspace_id, e.message_id) for e in storage.read_log(0, 10_000)]
    assert len(stored) == len(set(stored))
    expected = {(1 + k % 2, m) for k in range(8) for m in sent[k]}
    assert set(stored) == expected
    assert writer.stats.events == len(expected)
    assert writer.stats.duplicates == sum(map(len, sent.values())) - len(expected)


def test_separate_appenders_and_a_tailing_reader(
    storage: Storage, open_storage: OpenStorage
) -> None:
    """Several processes append at once; a consumer reading `seq > cursor` misses nothing."""
    appenders = [open_storage() for _ in range(3)]
    done = threading.Event()
    seen: list[LogEntry] = []

    def tail() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            batch = storage.read_log(cursor, 100)
            seen.extend(batch)
            cursor = batch[-1].seq if batch else cursor
            if finished and not batch:
                return

    def produce(k: int, store: Storage) -> None:
        for j in range(15):
            store.append([event(f"p{k}-{j}-{i}") for i in range(20)], [])

    reader = threading.Thread(target=tail)
    reader.start()
    threads = [threading.Thread(target=produce, args=(k, s)) for k, s in enumerate(appenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert len(seen) == 3 * 15 * 20
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})
    assert len(set(ids(seen))) == len(seen)


def test_appenders_in_separate_processes(storage: Storage, open_storage: OpenStorage) -> None:
    """`cairn serve --workers N`: processes append at once, half their messageIds the same; one
    sequence, every messageId once."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(3)

    def produce(k: int) -> None:
        store = open_storage()
        start.wait()
        for j in range(10):
            batch = [f"shared-{j}-{i}" if i < 10 else f"p{k}-{j}-{i}" for i in range(20)]
            store.append([event(m) for m in batch], [])
        store.close()

    processes = [context.Process(target=produce, args=(k,)) for k in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    stored = storage.read_log(0, 10_000)
    assert [e.seq for e in stored] == sorted({e.seq for e in stored})
    assert sorted(ids(stored)) == sorted(
        {f"shared-{j}-{i}" for j in range(10) for i in range(10)}
        | {f"p{k}-{j}-{i}" for k in range(3) for j in range(10) for i in range(10, 20)}
    )
    assert storage.count_events(1) == len(stored)


# text ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ODD_TEXT)
def test_odd_unicode_round_trips(storage: Storage, text: str) -> None:
    record = event(text, name=text, user_id=text, anonymous_id=text, source_id=text,
                   body=text.encode())  # fmt: skip
    assert storage.append([record, event(text)], []).duplicates == 1
    [entry] = storage.query_events(1, EventQuery(user_id=text, event=text, source_id=text))
    assert (entry.message_id, entry.event, entry.user_id, entry.anonymous_id) == (text,) * 4
    assert (entry.source_id, entry.body) == (text, text.encode())
    ws = storage.create_workspace(text)
    assert storage.workspace_by_name(text) == ws
    source = storage.create_source(ws.id, text, text, text)
    assert storage.source_by_write_key(text) == source
    token = storage.create_token(ws.id, text, text, text)
    assert storage.token_by_hash(text) == token
    storage.append([], [RejectedRecord(ws.id, text, 1, text, text, text.encode())])
    [rejected] = storage.list_rejected(ws.id, before_id=None, limit=1)
    assert (rejected.source_id, rejected.code, rejected.message) == (text, text, text)
    storage.commit_cursor(text, 5)
    assert storage.get_cursor(text) == 5


def test_unicode_normal_forms_are_distinct(storage: Storage) -> None:
    result = storage.append([event("\u00e9"), event("e\u0301"), event("\u00e9")], [])
    assert (result.inserted, result.duplicates) == (2, 1)


# property: dedupe is the same algebra on every backend ---------------------------------------
_KEYS = st.tuples(
    st.integers(0, 1),  # workspace offset
    st.sampled_from([-1, 0, 7]),  # dedupe bucket
    st.sampled_from(["a", "b", "\u00e9", "e\u0301", "👩‍💻", "שלום"]),  # message id
)
_CALLS = st.lists(st.lists(_KEYS, max_size=8), min_size=1, max_size=4)


@pytest.mark.postgres
def test_dedupe_keeps_exactly_the_distinct_keys_on_every_backend(
    tmp_path: Path, postgres_url: str
) -> None:
    backends: list[Storage] = [SQLiteStorage(tmp_path / "cairn.db"), PostgresStorage(postgres_url)]
    for backend in backends:
        backend.migrate()
    examples = itertools.count()

    @settings(max_examples=40, deadline=None)
    @given(calls=_CALLS)
    def check(calls: list[list[tuple[int, int, str]]]) -> None:
        base = 10 * next(examples) + 1  # fresh workspaces: examples share the databases
        records = [
            [event(mid, workspace=base + ws, bucket=bucket, body=f"{n}/{i}".encode())
             for i, (ws, bucket, mid) in enumerate(call)]
            for n, call in enumerate(calls)
        ]  # fmt: skip
        first_copies: dict[tuple[int, int, str], bytes] = {}
        for call in records:
            for r in call:
                first_copies.setdefault((r.workspace_id, r.dedupe_bucket, r.message_id), r.body)
        outcomes = [_apply(backend, records) for backend in backends]
        assert outcomes[0] == outcomes[1]
        results, stored = outcomes[0]
        assert sum(inserted for inserted, _, _ in results) == len(first_copies)
        assert sorted(body for _, _, body in stored) == sorted(first_copies.values())

    try:
        check()
    finally:
        for backend in backends:
            backend.close()


def _apply(
    storage: Storage, calls: list[list[EventRecord]]
) -> tuple[list[tuple[int, int, int]], list[tuple[int, str, bytes]]]:
    """Per call (inserted, duplicates, last_seq); then what was stored, seqs relative to the start."""
    start = storage.last_seq()
    results = []
    for call in calls:
        r = storage.append(call, [])
        results.append((r.inserted, r.duplicates, r.last_seq - start))
    stored = [(e.seq - start, e.message_id, e.body) for e in storage.read_log(start, 1000)]
    return results, stored


def test_sources_and_tokens_need_an_existing_workspace(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.create_source(999_999, "web", "src_x", "key_x")
    with pytest.raises(NotFound):
        storage.create_token(999_999, "tok_x", "hash_x", "")


def test_token_hash_taken_is_a_conflict(storage: Storage) -> None:
    workspace = storage.create_workspace("acme")
    storage.create_token(workspace.id, "tok_a", "same-hash", "")
    with pytest.raises(Conflict):
        storage.create_token(workspace.id, "tok_b", "same-hash", "")


def test_event_counts_follow_appends_without_counting_duplicates(storage: Storage) -> None:
    append(storage, event("a"), event("b"), event("a"), event("c", workspace=2))
    append(storage, event("b"), event("d"), event("a", workspace=2))
    assert storage.count_events(1) == 3
    assert storage.count_events(2) == 2
    assert storage.count_events(3) == 0
    total = len(storage.read_log(0, 100))
    assert storage.count_events(1) + storage.count_events(2) == total
