"""`decompress` and `decode_body`: request bodies to messages, and the lenient item-by-item path."""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.errors import BadRequest, InvalidBody, InvalidEncoding, InvalidJSON, PayloadTooLarge
from cairn.ingest.decode import ItemError, Payload, decode_body, decompress

LIMIT = 500 * 1024
JSON_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ['"', "\\", "\\\\\"", "]", "}", "[{", "\u2028", "\U0001f600", "\x00", "\\ud800"]
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=15,
)  # fmt: skip
POISON = b'{"type": "track", "n": 1e400}'


# --- decompress ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        (None, bytes),
        ("", bytes),
        ("identity", bytes),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        (" GZip ", gzip.compress),
        ("deflate", zlib.compress),
    ],
)
def test_decompress_undoes_each_encoding(encoding: str | None, pack: Any) -> None:
    data = json.dumps({"batch": [{"event": "x" * 1000}]}).encode()
    assert decompress(pack(data), encoding, LIMIT) == data


def test_decompress_reads_every_gzip_member() -> None:
    """RFC 1952: a gzip stream may hold several members (`cat a.gz b.gz`); all of them count."""
    body = gzip.compress(b'{"batch": [') + gzip.compress(b'{"type": "track"}]}')
    assert decompress(body, "gzip", LIMIT) == b'{"batch": [{"type": "track"}]}'


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip.compress(b'{"batch": []}')[:-5], "gzip"),
        (gzip.compress(b'{"batch": []}')[:12], "gzip"),
        (b'{"batch": []}', "gzip"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (gzip.compress(b"{}"), "deflate"),
        (b"{}", "br"),
        (b"{}", "compress"),
        (b"{}", "gzip, identity"),
    ],
)
def test_decompress_refuses_broken_or_unknown_encodings(body: bytes, encoding: str) -> None:
    with pytest.raises(InvalidEncoding):
        decompress(body, encoding, LIMIT)


def test_decompress_stops_at_the_limit() -> None:
    assert decompress(b"x" * 100, None, 100) == b"x" * 100
    with pytest.raises(PayloadTooLarge):
        decompress(b"x" * 101, None, 100)
    assert decompress(gzip.compress(b"x" * 100), "gzip", 100) == b"x" * 100
    with pytest.raises(PayloadTooLarge):
        decompress(gzip.compress(b"x" * 101), "gzip", 100)


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)  # 200 MB in ~200 KB
    with pytest.raises(PayloadTooLarge):
        decompress(bomb, "gzip", LIMIT)


@given(data=st.binary(max_size=2000), encoding=st.sampled_from(["gzip", "deflate", None]))
def test_decompress_only_raises_bad_request_or_too_large(data: bytes, encoding: str | None) -> None:
    with contextlib.suppress(BadRequest, PayloadTooLarge):
        decompress(data, encoding, 1000)


@given(data=st.binary(max_size=5000), limit=st.integers(min_value=0, max_value=6000))
def test_gzip_round_trips_under_the_limit(data: bytes, limit: int) -> None:
    if len(data) <= limit:
        assert decompress(gzip.compress(data), "gzip", limit) == data
    else:
        with pytest.raises(PayloadTooLarge):
            decompress(gzip.compress(data), "gzip", limit)


# --- decode_body -----------------------------------------------------------------------------


def test_a_single_message_is_its_own_envelope() -> None:
    payload = decode_body(b'{"type": "track", "event": "e"}', batch=False)
    assert payload.items == [{"type": "track", "event": "e"}]


def test_a_batch_splits_into_envelope_and_items() -> None:
    body = b'{"batch": [{"a": 1}, 2], "context": {"ip": "1.2.3.4"}, "sentAt": "x"}'
    payload = decode_body(body, batch=True)
    assert payload.items == [{"a": 1}, 2]
    assert payload.envelope == {"context": {"ip": "1.2.3.4"}, "sentAt": "x"}


def test_a_bare_list_is_a_batch() -> None:
    assert decode_body(b'[{"a": 1}]', batch=True) == Payload(envelope={}, items=[{"a": 1}])


@pytest.mark.parametrize(
    ("body", "batch", "error"),
    [
        (b"", False, InvalidJSON),
        (b"  \n", True, InvalidJSON),
        (b"{", False, InvalidJSON),
        (b'{"batch": [{"a": 1}', True, InvalidJSON),
        (b'{"batch": [{"a": 1}], "sentAt": ', True, InvalidJSON),
        (b'{"batch": [], "context": {"n": 1e400}}', True, InvalidJSON),
        (b"[1, 2]", False, InvalidBody),
        (b'"track"', False, InvalidBody),
        (b"null", False, InvalidBody),
        (b"12", True, InvalidBody),
        (b'{"batch": {"a": 1}}', True, InvalidBody),
        (b'{"batch": null}', True, InvalidBody),
        (b'{"sentAt": "2024-01-01T00:00:00Z"}', True, InvalidBody),
    ],
)
def test_unreadable_bodies_raise_bad_request(body: bytes, batch: bool, error: type) -> None:
    with pytest.raises(error):
        decode_body(body, batch=batch)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"userId": "u", "n": 1e400}', "invalid_number"),
        (b'{"userId": "u", "n": %s}' % (b"[" * 5000 + b"]" * 5000), "nesting_too_deep"),
    ],
)
def test_a_single_message_that_cannot_be_kept_is_an_item_error(body: bytes, code: str) -> None:
    [item] = decode_body(body, batch=False).items
    assert isinstance(item, ItemError)
    assert item.code == code


def test_one_broken_item_costs_only_itself() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    body = b'{"batch": [{"a": 1}, %s, {"x": %s}, {"b": "\\ud83d"}, "\xff"]}' % (POISON, deep)
    payload = decode_body(body, batch=True)
    first, poisoned, nested, surrogate, bad_utf8 = payload.items
    assert first == {"a": 1}
    assert isinstance(poisoned, ItemError)
    assert poisoned.code == "invalid_number"
    assert isinstance(nested, ItemError)
    assert nested.code == "nesting_too_deep"
    assert surrogate == {"b": "\ufffd"}
    assert bad_utf8 == "\ufffd"


def test_a_lone_surrogate_in_a_single_message_is_replaced() -> None:
    payload = decode_body(b'{"event": "caf\\ud83d", "\\udc00": ["\\ud800x"]}', batch=False)
    assert payload.items == [{"event": "caf\ufffd", "\ufffd": ["\ufffdx"]}]


def test_an_item_error_keeps_the_raw_text_for_operators() -> None:
    payload = decode_body(b'{"batch": [%s]}' % POISON, batch=True)
    [error] = payload.items
    assert isinstance(error, ItemError)
    assert json.loads(error.text.replace("1e400", "1")) == {"type": "track", "n": 1}


@given(items=st.lists(JSON, max_size=6), envelope=st.dictionaries(JSON_TEXT, JSON, max_size=3))
def test_the_fast_path_returns_what_was_sent(items: list[Any], envelope: dict[str, Any]) -> None:
    envelope.pop("batch", None)
    body = json.dumps({**envelope, "batch": items}).encode()
    payload = decode_body(body, batch=True)
    assert (payload.envelope, payload.items) == (envelope, items)


@given(
    items=st.lists(JSON, max_size=6),
    envelope=st.dictionaries(JSON_TEXT, JSON, max_size=3),
    at=st.integers(min_value=0, max_value=6),
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
)
def test_the_item_by_item_path_agrees_with_the_fast_path(
    items: list[Any], envelope: dict[str, Any], at: int, indent: int | None, ascii_only: bool
) -> None:
    """A poisoned item sends the whole batch down the splitter; every other item must come out
    exactly as the fast path would have decoded it."""
    envelope.pop("batch", None)
    at = min(at, len(items))
    texts = [json.dumps(item, indent=indent, ensure_ascii=ascii_only).encode() for item in items]
    texts.insert(at, POISON)
    head = json.dumps(envelope, indent=indent, ensure_ascii=ascii_only).encode()[:-1].rstrip()
    body = head + (b", " if envelope else b"") + b'"batch": [' + b",\n ".join(texts) + b"]}"
    payload = decode_body(body, batch=True)
    assert payload.envelope == envelope
    assert isinstance(payload.items[at], ItemError)
    assert payload.items[:at] + payload.items[at + 1 :] == items


@given(data=st.binary(max_size=500), batch=st.booleans())
def test_decode_body_only_raises_bad_request(data: bytes, batch: bool) -> None:
    try:
        payload = decode_body(data, batch=batch)
    except BadRequest:
        return
    assert isinstance(payload.envelope, dict)
    assert isinstance(payload.items, list)
    if not batch:
        assert len(payload.items) == 1


@given(text=st.text(alphabet='{}[]",:\\ 0123456789.eE-+truefalsnbatch', max_size=80))
def test_json_like_garbage_only_raises_bad_request(text: str) -> None:
    for batch in (True, False):
        with contextlib.suppress(BadRequest):
            decode_body(text.encode(), batch=batch)
