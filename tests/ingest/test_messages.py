"""`normalize`: one message in, a log record or a rejection with its reason out (pure, no I/O)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.ingest.decode import ItemError
from cairn.ingest.messages import (
    MESSAGE_TYPES,
    EventRecord,
    Rejection,
    RequestInfo,
    normalize,
    rejected_record,
)
from tests.support.collector import deep_merge, millis
from tests.support.messages import catalogue

RECEIVED = 1_717_243_200_000  # 2024-06-01T12:00:00Z
RECEIVED_AT = "2024-06-01T12:00:00.000Z"


def _info(**fields: Any) -> RequestInfo:
    return RequestInfo(workspace_id=1, source_id="src_1", received_ms=RECEIVED, **fields)


def _record(raw: Any, forced: str | None = None, **info: Any) -> EventRecord:
    outcome = normalize(raw, 0, _info(**info), forced)
    assert isinstance(outcome, EventRecord), outcome
    return outcome


def _stored(raw: Any, forced: str | None = None, **info: Any) -> dict[str, Any]:
    stored: dict[str, Any] = msgspec.json.decode(_record(raw, forced, **info).body)
    return stored


def _code(raw: Any, forced: str | None = None, **info: Any) -> str:
    outcome = normalize(raw, 3, _info(**info), forced)
    assert isinstance(outcome, Rejection), outcome
    assert outcome.index == 3
    return outcome.code


# --- what is stored --------------------------------------------------------------------------


def test_a_track_becomes_a_record_and_a_body() -> None:
    record = _record({"type": "track", "userId": "u1", "event": "Order Completed",
                      "messageId": "m-1", "properties": {"total": 9.5}})  # fmt: skip
    assert (record.workspace_id, record.source_id, record.message_id) == (1, "src_1", "m-1")
    assert (record.type, record.event, record.user_id, record.anonymous_id) == (
        "track", "Order Completed", "u1", None
    )  # fmt: skip
    assert (record.timestamp_ms, record.received_ms, record.dedupe_bucket) == (
        RECEIVED, RECEIVED, -1
    )  # fmt: skip
    assert msgspec.json.decode(record.body) == {
        "type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-1",
        "properties": {"total": 9.5}, "timestamp": RECEIVED_AT, "receivedAt": RECEIVED_AT,
        "channel": "server", "version": 2,
    }  # fmt: skip


def test_nulls_write_keys_and_metadata_are_dropped() -> None:
    stored = _stored({"type": "page", "anonymousId": "a", "userId": None, "name": None,
                      "writeKey": "secret", "_metadata": {"bundled": []}, "properties": None})  # fmt: skip
    assert set(stored) == {"type", "anonymousId", "messageId", "timestamp", "receivedAt",
                           "channel", "version"}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "text"),
    [(42, "42"), (4.0, "4"), (1.5, "1.5"), (12345678901234567890123, "12345678901234567890123"),
     (-7, "-7"), ("keep", "keep"), (1e20, "100000000000000000000")],
)  # fmt: skip
def test_numeric_ids_become_strings(value: Any, text: str) -> None:
    for name in ("userId", "anonymousId"):
        record = _record({"type": "identify", name: value})
        assert msgspec.json.decode(record.body)[name] == text
        assert (record.user_id if name == "userId" else record.anonymous_id) == text
    stored = _stored({"type": "alias", "userId": "u", "previousId": value})
    assert stored["previousId"] == text
    assert _stored({"type": "group", "userId": "u", "groupId": value})["groupId"] == text


def test_the_path_type_wins_over_the_item_type() -> None:
    assert _record({"type": "alias", "userId": "u", "event": "E"}, "track").type == "track"
    assert _record({"type": " Identify ", "userId": "u"}).type == "identify"


def test_a_message_id_is_generated_when_missing_or_empty() -> None:
    ids = {_record({"type": "identify", "userId": "u", "messageId": m}).message_id
           for m in (None, "", None)}  # fmt: skip
    assert len(ids) == 3
    assert all(0 < len(i) <= 100 for i in ids)
    assert _record({"type": "identify", "userId": "u", "messageId": 17}).message_id == "17"


def test_batch_context_and_integrations_merge_under_the_item() -> None:
    item = {"type": "track", "userId": "u", "event": "e",
            "context": {"app": {"version": "2"}, "locale": "fr"},
            "integrations": {"Slack": True}}  # fmt: skip
    batch_context = {"app": {"name": "Shop", "version": "1"}, "library": {"name": "x"}}
    batch_integrations = {"All": False, "Slack": False}
    stored = _stored(copy.deepcopy(item), context=batch_context, integrations=batch_integrations)
    assert stored["context"] == deep_merge(batch_context, item["context"])
    assert stored["integrations"] == {"All": False, "Slack": True}
    assert batch_context == {"app": {"name": "Shop", "version": "1"}, "library": {"name": "x"}}


def test_browser_calls_get_ip_and_user_agent_unless_they_carry_their_own() -> None:
    browser = {"ip": "198.51.100.7", "user_agent": "Mozilla/5.0", "browser": True}
    stored = _stored({"type": "page", "anonymousId": "a"}, **browser)
    assert stored["context"] == {"ip": "198.51.100.7", "userAgent": "Mozilla/5.0"}
    assert stored["channel"] == "browser"
    own = _stored({"type": "page", "anonymousId": "a",
                   "context": {"ip": "0.0.0.0", "userAgent": "own"}}, **browser)  # fmt: skip
    assert own["context"] == {"ip": "0.0.0.0", "userAgent": "own"}
    server = _stored({"type": "page", "anonymousId": "a"}, ip="10.0.0.1", user_agent="curl")
    assert "context" not in server
    direct = _stored({"type": "page", "anonymousId": "a", "context": {"direct": True}},
                     ip="10.0.0.1")  # fmt: skip
    assert direct["context"]["ip"] == "10.0.0.1"


@pytest.mark.parametrize(
    ("library", "browser", "channel"),
    [("analytics-python", False, "server"), ("analytics.js", False, "browser"),
     ("analytics-next", False, "browser"), ("analytics-ios", False, "mobile"),
     ("@segment/analytics-react-native", True, "mobile"), ("analytics-android", False, "mobile"),
     ("analytics-python", True, "browser"), (None, False, "server"), (7, False, "server")],
)  # fmt: skip
def test_the_channel_comes_from_the_library_and_the_request(
    library: Any, browser: bool, channel: str
) -> None:
    context = {} if library is None else {"library": {"name": library}}
    stored = _stored({"type": "track", "userId": "u", "event": "e", "context": context},
                     browser=browser)  # fmt: skip
    assert stored["channel"] == channel


# --- timestamps ------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(
        timespec="milliseconds"
    )


def test_clock_skew_is_corrected_with_the_batch_sent_at() -> None:
    ahead = 3_600_000  # the client's clock runs an hour fast
    client, sent = _iso(RECEIVED + ahead - 5000), _iso(RECEIVED + ahead)
    record = _record({"type": "track", "userId": "u", "event": "e", "timestamp": client},
                     sent_at=sent)  # fmt: skip
    stored = msgspec.json.decode(record.body)
    assert record.timestamp_ms == RECEIVED - 5000
    assert stored["timestamp"] == "2024-06-01T11:59:55.000Z"
    assert (stored["originalTimestamp"], stored["sentAt"]) == (client, sent)
    assert record.dedupe_bucket == millis(client) // 1000


def test_an_item_sent_at_wins_over_the_batch() -> None:
    stored = _stored({"type": "track", "userId": "u", "event": "e",
                      "timestamp": "2024-01-01T00:00:00.000Z", "sentAt": "2024-01-01T00:00:01Z"},
                     sent_at="2030-01-01T00:00:00Z")  # fmt: skip
    assert stored["timestamp"] == _iso(RECEIVED - 1000).replace("+00:00", "Z")
    assert stored["sentAt"] == "2024-01-01T00:00:01Z"


def test_without_sent_at_the_client_timestamp_is_kept() -> None:
    record = _record({"type": "identify", "userId": "u", "timestamp": "2020-02-02T02:02:02+02:00"})
    stored = msgspec.json.decode(record.body)
    assert stored["timestamp"] == "2020-02-02T00:02:02.000Z"
    assert stored["originalTimestamp"] == "2020-02-02T02:02:02+02:00"
    assert "sentAt" not in stored


def test_an_unreadable_batch_sent_at_is_ignored() -> None:
    stored = _stored({"type": "identify", "userId": "u", "timestamp": "2020-02-02T00:00:00Z"},
                     sent_at="not a time")  # fmt: skip
    assert stored["timestamp"] == "2020-02-02T00:00:00.000Z"
    assert "sentAt" not in stored


@pytest.mark.parametrize("name", ["timestamp", "sentAt", "originalTimestamp"])
@pytest.mark.parametrize("value", ["yesterday", 1_700_000_000, ["2024-01-01"], "2024-02-30"])
def test_unreadable_timestamps_are_rejected(name: str, value: Any) -> None:
    assert _code({"type": "track", "userId": "u", "event": "e", name: value}) == "invalid_timestamp"


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00Z", "0999-06-01T00:00:00.000Z", "9999-12-31T23:59:59Z"]
)
def test_stored_timestamps_are_always_iso_8601(timestamp: str) -> None:
    """.NET's DateTime.MinValue is a real client timestamp; what is stored must still parse."""
    for sent_at in (None, "2024-06-01T12:00:00Z"):
        stored = _stored({"type": "identify", "userId": "u", "timestamp": timestamp},
                         sent_at=sent_at)  # fmt: skip
        for name in ("timestamp", "receivedAt"):
            datetime.fromisoformat(stored[name].replace("Z", "+00:00"))


# --- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", catalogue("unit", lenient=False)[1], ids=lambda bad: bad.name)
def test_each_bad_message_gets_its_code(bad: Any) -> None:
    assert _code(json.loads(bad.raw)) == bad.code


@pytest.mark.parametrize("good", catalogue("unit", lenient=False)[0], ids=lambda good: good.name)
def test_each_odd_but_valid_message_is_kept(good: Any) -> None:
    stored = _stored(json.loads(good.raw))
    assert stored["messageId"] == good.message_id
    for key, value in good.stored.items():
        assert stored[key] == value


@pytest.mark.parametrize(
    ("forced", "message", "code"),
    [("track", {"userId": "u"}, "missing_event"),
     ("group", {"userId": "u", "groupId": " "}, "missing_group_id"),
     ("alias", {"userId": "u", "previousId": ""}, "missing_alias_ids"),
     ("identify", {}, "missing_id")],
)  # fmt: skip
def test_the_path_type_decides_what_is_required(
    forced: str, message: dict[str, Any], code: str
) -> None:
    assert _code({**message, "type": "identify"}, forced) == code


def test_an_item_error_becomes_a_rejection() -> None:
    outcome = normalize(ItemError("invalid_number", "too big", "{...}"), 4, _info())
    assert outcome == Rejection(4, "invalid_number", "too big")


def test_the_size_limit_counts_the_stored_message() -> None:
    message = {"type": "track", "userId": "u", "event": "e", "properties": {"p": "x" * 900}}
    assert isinstance(normalize(copy.deepcopy(message), 0, _info()), EventRecord)
    assert _code(message, max_message_bytes=900) == "message_too_large"


def test_a_rejected_record_keeps_the_message_and_the_reason() -> None:
    raw = {"type": "track", "userId": "u", "properties": {"a": [1, 2]}}
    rejection = normalize(copy.deepcopy(raw), 7, _info())
    assert isinstance(rejection, Rejection)
    record = rejected_record(raw, rejection, _info())
    assert (record.workspace_id, record.source_id, record.received_ms) == (1, "src_1", RECEIVED)
    assert record.code == "missing_event"
    assert record.message == "message 7: track needs an event name"
    assert msgspec.json.decode(record.body) == raw


# --- properties ------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                              max_size=3),
    max_leaves=10,
)  # fmt: skip
FIELDS = ["type", "userId", "anonymousId", "event", "properties", "traits", "context",
          "integrations", "groupId", "previousId", "name", "category", "timestamp", "sentAt",
          "originalTimestamp", "messageId", "writeKey", "_metadata"]  # fmt: skip
VALUES = JSON | st.sampled_from([*MESSAGE_TYPES, "2024-01-01T00:00:00Z", "0001-01-01", "u-1"])
MESSAGES = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=12) | JSON
INFOS = st.builds(
    _info,
    browser=st.booleans(),
    ip=st.none() | st.just("203.0.113.1"),
    user_agent=st.none() | st.text(max_size=10),
    sent_at=st.none() | st.sampled_from(["2024-06-01T12:00:05Z", "junk", "0001-01-01"]),
    context=st.none() | st.dictionaries(st.sampled_from(["ip", "app", "library", "direct"]), JSON),
    integrations=st.none() | st.dictionaries(st.text(max_size=5), JSON, max_size=3),
    max_message_bytes=st.sampled_from([200, 32 * 1024]),
)


@given(raw=MESSAGES, info=INFOS, forced=st.none() | st.sampled_from(MESSAGE_TYPES))
def test_normalize_never_raises_and_keeps_its_promises(
    raw: Any, info: RequestInfo, forced: str | None
) -> None:
    outcome = normalize(copy.deepcopy(raw), 0, info, forced)
    if isinstance(outcome, Rejection):
        assert outcome.code
        assert outcome.message
        rejected_record(raw, outcome, info)  # must not raise either
        return
    stored = msgspec.json.decode(outcome.body)
    assert len(outcome.body) <= info.max_message_bytes
    assert stored["type"] == outcome.type in MESSAGE_TYPES
    assert forced is None or outcome.type == forced
    assert stored["messageId"] == outcome.message_id
    assert 0 < len(outcome.message_id) <= 100
    assert stored.get("userId") == outcome.user_id
    assert stored.get("anonymousId") == outcome.anonymous_id
    assert (outcome.user_id or "").strip() or (outcome.anonymous_id or "").strip()
    assert None not in stored.values()
    assert not {"writeKey", "_metadata"} & set(stored)
    assert stored["receivedAt"] == RECEIVED_AT
    assert stored["version"] == 2
    assert stored["channel"] in ("server", "browser", "mobile")
    assert millis(stored["timestamp"]) == outcome.timestamp_ms
    for name in ("userId", "anonymousId", "groupId", "previousId", "messageId", "event"):
        assert name not in stored or "\x00" not in stored[name]


@given(
    client_offset=st.integers(min_value=-(10**10), max_value=10**10),
    skew=st.integers(min_value=-(10**10), max_value=10**10),
)
def test_skew_correction_is_received_minus_the_client_delay(client_offset: int, skew: int) -> None:
    sent_ms = RECEIVED + skew
    client_ms = sent_ms - abs(client_offset)
    record = _record({"type": "identify", "userId": "u", "timestamp": _iso(client_ms)},
                     sent_at=_iso(sent_ms))  # fmt: skip
    assert record.timestamp_ms == RECEIVED - (sent_ms - client_ms)


@pytest.mark.parametrize("kind", [[], {}, ["track"], {"t": 1}, 3, True, " Track ", "TRACK", "x"])
def test_a_type_of_any_shape_is_read_or_refused_never_raised(kind: Any) -> None:
    outcome = normalize({"type": kind, "event": "E", "userId": "u"}, 0, _info())
    if isinstance(kind, str) and kind.strip().lower() == "track":
        assert isinstance(outcome, EventRecord)
        assert outcome.type == "track"
    else:
        assert isinstance(outcome, Rejection)
        assert outcome.code in ("missing_type", "invalid_type")
