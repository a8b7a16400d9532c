"""The collector's HTTP surface in process (Litestar's test client): bad input of every kind gets
a clear answer, and nothing valid beside it is lost (PROTOCOL.md, "Limits and answers")."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import (
    App,
    assert_error,
    basic,
    by_message_id,
    running_app,
    track,
)
from tests.support.messages import assert_kept, assert_listed, batch_body, catalogue, interleave

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
COLLECTOR_PATHS = [
    *(f"/v1/{t}" for t in ("identify", "track", "page", "screen", "group", "alias")),
    *(f"/v1/{t}" for t in "itpsga"),
    "/v1/batch",
    "/v1/import",
    "/v1/b",
]
ORIGIN = "https://shop.example"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with running_app(tmp_path / "data", source_cache_seconds=0) as running:
        yield running


def _source_id(app: App) -> str:
    sources = app.client.get("/api/v1/sources", headers=app.auth).json()["data"]
    return str(sources[0]["id"])


# --- whole-request errors --------------------------------------------------------------------


def _gzip_bomb() -> bytes:
    return gzip.compress(b'{"batch": [' + b" " * (600 * 1024) + b"]}")


REQUEST_ERRORS = [
    ("invalid JSON", "/v1/batch", b'{"batch": [{"type": "track",', {}, 400, "invalid_json"),
    ("not JSON", "/v1/track", b"hello", {}, 400, "invalid_json"),
    ("empty body", "/v1/batch", b"", {}, 400, "invalid_json"),
    ("only whitespace", "/v1/t", b" \n\t ", {}, 400, "invalid_json"),
    ("single message as a list", "/v1/track", b"[]", {}, 400, "invalid_body"),
    ("single message as a string", "/v1/identify", b'"x"', {}, 400, "invalid_body"),
    ("batch not a list", "/v1/batch", b'{"batch": {"type": "track"}}', {}, 400, "invalid_body"),
    ("batch missing", "/v1/import", b'{"sentAt": "2024-01-01T00:00:00Z"}', {}, 400,
     "invalid_body"),
    ("batch body a number", "/v1/b", b"12", {}, 400, "invalid_body"),
    ("truncated gzip", "/v1/batch", gzip.compress(b'{"batch": []}')[:-6],
     {"Content-Encoding": "gzip"}, 400, "invalid_encoding"),
    ("plain body labelled gzip", "/v1/batch", b'{"batch": []}', {"Content-Encoding": "gzip"},
     400, "invalid_encoding"),
    ("unknown Content-Encoding", "/v1/batch", b'{"batch": []}', {"Content-Encoding": "br"},
     400, "invalid_encoding"),
    ("gzip body labelled deflate", "/v1/batch", gzip.compress(b'{"batch": []}'),
     {"Content-Encoding": "deflate"}, 400, "invalid_encoding"),
    ("request over 500 KB", "/v1/batch", b'{"batch": [' + b" " * (501 * 1024) + b"]}", {},
     413, "request_too_large"),
    ("request over 1 MB", "/v1/batch", b"x" * (1100 * 1024), {}, 413, "request_too_large"),
    ("gzip bomb over 500 KB inflated", "/v1/batch", _gzip_bomb(), {"Content-Encoding": "gzip"},
     413, "request_too_large"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in REQUEST_ERRORS],
)
def test_unreadable_requests_get_a_clear_error(
    app: App, path: str, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    answer = app.client.post(
        path, content=body, headers={"X-Write-Key": app.write_key, "Origin": ORIGIN, **headers}
    )
    assert_error(answer, status, code)
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert app.batch([track(messageId="after")]).status_code == 200  # still serving
    assert [e["messageId"] for e in app.events()] == ["after"]


AUTH_ERRORS = [
    ("no key anywhere", {}, None, 401, "invalid_write_key"),
    ("unknown key in body", {}, "nope", 401, "invalid_write_key"),
    ("unknown key in Basic", basic("nope"), None, 401, "invalid_write_key"),
    ("unknown X-Write-Key", {"X-Write-Key": "nope"}, None, 401, "invalid_write_key"),
    ("Basic that is not base64", {"Authorization": "Basic %%%"}, None, 401, "invalid_write_key"),
    ("empty Basic user", basic(""), None, 401, "invalid_write_key"),
    ("a bearer token is not a write key", {"Authorization": "Bearer abc"}, None, 401,
     "invalid_write_key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body_key", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in AUTH_ERRORS],
)
def test_bad_write_keys_are_refused(
    app: App, headers: dict[str, str], body_key: str | None, status: int, code: str
) -> None:
    message = track(**({"writeKey": body_key} if body_key else {}))
    for path, body in [("/v1/track", message), ("/v1/batch", {"batch": [message]}),
                       ("/v1/b", {"batch": [message], "writeKey": body_key})]:  # fmt: skip
        answer = app.client.post(path, json=body, headers={"Origin": ORIGIN, **headers})
        assert_error(answer, status, code)
        assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert app.events() == []
    assert app.rejected() == []


def test_a_disabled_source_is_refused_until_enabled_again(app: App) -> None:
    source = _source_id(app)
    off = app.client.patch(f"/api/v1/sources/{source}", json={"enabled": False}, headers=app.auth)
    assert off.status_code == 200
    assert off.json()["enabled"] is False
    for path, body in [("/v1/track", track()), ("/v1/batch", {"batch": [track()]})]:
        answer = app.client.post(
            path, json=body, headers={**basic(app.write_key), "Origin": ORIGIN}
        )
        assert_error(answer, 403, "source_disabled")
        assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert_error(app.client.get(f"/v1/projects/{app.write_key}/settings"), 403, "source_disabled")
    assert app.client.get(f"/v1/pixel/track?data={_pixel_data(app, 'px-off')}").content == GIF
    assert app.events() == []

    app.client.patch(f"/api/v1/sources/{source}", json={"enabled": True}, headers=app.auth)
    assert app.batch([track(messageId="back")]).status_code == 200
    assert [e["messageId"] for e in app.events()] == ["back"]


def test_bad_source_patches_are_400_not_500(app: App) -> None:
    source = _source_id(app)
    for body in [{"enabled": "no"}, {"enabled": False, "name": "x"}, {}, [], "x", None]:
        answer = app.client.patch(f"/api/v1/sources/{source}", json=body, headers=app.auth)
        assert_error(answer, 400)


def test_patching_an_unknown_source_is_404(app: App) -> None:
    answer = app.client.patch("/api/v1/sources/src_nope", json={"enabled": False}, headers=app.auth)
    assert_error(answer, 404)


# --- per-message rejections: the others are kept ---------------------------------------------


@pytest.mark.parametrize("lenient", [False, True], ids=["msgspec-path", "item-by-item-path"])
def test_bad_messages_are_rejected_one_by_one(app: App, lenient: bool) -> None:
    goods, bads = catalogue("http", lenient=lenient)
    items = interleave(goods, bads)
    answer = app.client.post(
        "/v1/batch", content=batch_body([item.raw for item in items], app.write_key)
    )
    assert answer.status_code == 200, answer.text
    assert_kept(items, answer.json(), app.events())
    assert_listed(items, app.rejected())


def test_2501_messages_keep_the_first_2500(app: App) -> None:
    items = [track(messageId=f"m-{n}") for n in range(2501)]
    answer = app.batch(items)
    assert answer.status_code == 200
    assert answer.json()["rejected"] == [
        {"index": 2500, "code": "batch_too_large", "message": "a batch holds at most 2500 messages"}
    ]
    stored = by_message_id(app.events())
    assert set(stored) == {f"m-{n}" for n in range(2500)}
    [rejected] = app.rejected()
    assert rejected["code"] == "batch_too_large"
    assert rejected["message"].startswith("message 2500:")
    assert rejected["body"]["messageId"] == "m-2500"


def test_exactly_2500_messages_are_all_kept(app: App) -> None:
    answer = app.batch([track(messageId=f"m-{n}") for n in range(2500)])
    assert answer.json() == {"success": True}
    assert len(app.events()) == 2500


def test_an_oversized_message_costs_only_itself(app: App) -> None:
    items = [track(messageId="a"), track(messageId="big", properties={"x": "y" * 33_000}),
             track(messageId="b")]  # fmt: skip
    answer = app.batch(items)
    assert [(r["index"], r["code"]) for r in answer.json()["rejected"]] == [
        (1, "message_too_large")
    ]
    assert {e["messageId"] for e in app.events()} == {"a", "b"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        pytest.param(b'{"userId":"u","event":"e","properties":{"n":1e400}}', "invalid_number",
                     id="1e400"),
        pytest.param(b'{"userId":"u","event":"e","p":%s}' % (b"[" * 1000 + b"]" * 1000),
                     "nesting_too_deep", id="1000-deep"),
        pytest.param(b'{"userId":"u"}', "missing_event", id="no-event"),
    ],
)  # fmt: skip
def test_a_rejected_single_message_is_listed_for_operators(app: App, raw: bytes, code: str) -> None:
    """PROTOCOL.md: never drop silently. A single-message call that is refused (200 with a
    rejection, or 400) must still show up in the rejected list with its reason."""
    answer = app.client.post("/v1/track", content=raw, headers={"X-Write-Key": app.write_key})
    assert answer.status_code in (200, 400), answer.text
    assert [r["code"] for r in app.rejected()] == [code]


def test_the_rejected_list_survives_a_deeply_nested_message(app: App) -> None:
    deep = b'{"type":"track","userId":"u","event":"e","p":%s}' % (b"[" * 990 + b"]" * 990)
    answer = app.client.post("/v1/batch", content=batch_body([deep], app.write_key))
    assert answer.json()["rejected"][0]["code"] == "nesting_too_deep"
    listing = app.client.get("/api/v1/rejected", headers=app.auth)
    assert listing.status_code == 200, listing.text
    assert listing.json()["data"][0]["code"] == "nesting_too_deep"


def test_whatever_is_accepted_can_be_read_back(app: App) -> None:
    """Near the nesting limit: a message is either rejected, or stored and listable. A stored
    event the API cannot decode would break the events list (and the debugger) for good."""
    for depth in range(940, 1000):
        deep = b'{"type":"track","userId":"u","event":"d%d","p":%s}' % (
            depth, b"[" * depth + b"]" * depth
        )  # fmt: skip
        answer = app.client.post("/v1/batch", content=batch_body([deep], app.write_key))
        assert answer.status_code == 200, (depth, answer.text)
        for path in ("/api/v1/events", "/api/v1/rejected"):
            listing = app.client.get(path, headers=app.auth)
            assert listing.status_code == 200, (depth, path, answer.text, listing.text)


def test_the_rejected_list_shows_the_message_as_sent(app: App) -> None:
    sent = {"type": "track", "userId": 5, "event": None, "properties": {"a": None},
            "context": {"ip": "1.2.3.4"}, "messageId": "as-sent"}  # fmt: skip
    answer = app.batch([sent], context={"library": {"name": "batch-level"}})
    assert answer.json()["rejected"][0]["code"] == "missing_event"
    [entry] = app.rejected()
    assert entry["body"] == sent


def test_lone_surrogates_in_a_single_message_become_replacement_characters(app: App) -> None:
    raw = b'{"userId":"u\\udfff","event":"Caf\\ud83d","properties":{"k":"\\ud800\\ud800x"}}'
    answer = app.client.post("/v1/t", content=raw, headers=basic(app.write_key))
    assert answer.json() == {"success": True}
    [event] = app.events()
    assert (event["userId"], event["event"]) == ("u\ufffd", "Caf\ufffd")
    assert event["properties"] == {"k": "\ufffd\ufffdx"}


def test_a_valid_surrogate_pair_is_kept(app: App) -> None:
    raw = b'{"userId":"u","event":"Smile \\ud83d\\ude00"}'
    app.client.post("/v1/track", content=raw, headers=basic(app.write_key))
    assert app.events()[0]["event"] == "Smile \U0001f600"


# --- dedupe ----------------------------------------------------------------------------------


def test_a_retried_message_is_stored_once(app: App) -> None:
    first = track(messageId="dup-1", timestamp="2024-05-01T10:00:00.250Z")
    untimed = track(messageId="dup-2")
    for _ in range(3):
        answer = app.batch([first, untimed, first])
        assert answer.json() == {"success": True}  # a duplicate is not an error
    stored = app.events()
    assert sorted(e["messageId"] for e in stored) == ["dup-1", "dup-2"]


def test_dedupe_does_not_merge_different_messages(app: App) -> None:
    app.batch([track(messageId="x-1"), track(messageId="x-2"), track(messageId="X-1")])
    assert sorted(e["messageId"] for e in app.events()) == ["X-1", "x-1", "x-2"]


# --- gzip, deflate, content types ------------------------------------------------------------


def test_compressed_bodies_are_accepted(app: App) -> None:
    packers = {"gzip": gzip.compress, "x-gzip": gzip.compress, "GZIP": gzip.compress,
               "deflate": zlib.compress, "identity": bytes, "": bytes}  # fmt: skip
    for encoding, pack in packers.items():
        body = {"batch": [track(messageId=f"z-{encoding}")], "writeKey": app.write_key}
        answer = app.client.post(
            "/v1/batch",
            content=pack(json.dumps(body).encode()),
            headers={"Content-Encoding": encoding},
        )
        assert answer.json() == {"success": True}, encoding
    assert len(app.events()) == len(packers)


def test_any_content_type_carries_json(app: App) -> None:
    types = ["text/plain", "text/plain;charset=UTF-8", "application/json",
             "application/json; charset=utf-8", "application/octet-stream", ""]  # fmt: skip
    for content_type in types:
        answer = app.client.post(
            "/v1/t",
            content=json.dumps(track(writeKey=app.write_key, messageId=content_type or "none")),
            headers={"Content-Type": content_type},
        )
        assert answer.json() == {"success": True}, content_type
    assert len(app.events()) == len(types)


# --- browser traffic: ip, user agent, proxies ------------------------------------------------


def test_browser_calls_get_ip_and_user_agent_server_calls_do_not(app: App) -> None:
    agent = {"User-Agent": "Mozilla/5.0 Test"}
    app.client.post(
        "/v1/t",
        content=json.dumps(track(messageId="browser")),
        headers={"Content-Type": "text/plain", **basic(app.write_key), **agent},
    )
    app.client.post(
        "/v1/track",
        json=track(messageId="server"),
        headers={**basic(app.write_key), **agent, "X-Forwarded-For": "198.51.100.9"},
    )
    app.client.post("/v1/track", json=track(messageId="direct", context={"direct": True}),
                    headers={**basic(app.write_key), **agent})  # fmt: skip
    stored = by_message_id(app.events())
    assert stored["browser"]["context"] == {"ip": "testclient", "userAgent": "Mozilla/5.0 Test"}
    assert stored["browser"]["channel"] == "browser"
    assert "context" not in stored["server"]  # X-Forwarded-For is not trusted by default
    assert stored["server"]["channel"] == "server"
    assert stored["direct"]["context"]["ip"] == "testclient"


def test_a_trusted_proxy_header_gives_the_client_ip(tmp_path: Path) -> None:
    with running_app(tmp_path, trusted_proxy_header="X-Forwarded-For") as app:
        app.client.post(
            "/v1/t",
            content=json.dumps(track()),
            headers={"Content-Type": "text/plain", "X-Forwarded-For": "198.51.100.9, 10.0.0.1",
                     **basic(app.write_key)},
        )  # fmt: skip
        assert app.events()[0]["context"]["ip"] == "198.51.100.9"


def test_a_client_ip_is_never_overwritten(app: App) -> None:
    for n, ip in enumerate(["0.0.0.0", "203.0.113.5"]):
        app.client.post("/v1/t", content=json.dumps(track(messageId=f"ip-{n}",
                        context={"ip": ip})), headers={"Content-Type": "text/plain",
                        **basic(app.write_key)})  # fmt: skip
    stored = by_message_id(app.events())
    assert stored["ip-0"]["context"]["ip"] == "0.0.0.0"
    assert stored["ip-1"]["context"]["ip"] == "203.0.113.5"


# --- CORS ------------------------------------------------------------------------------------

PREFLIGHT_PATHS = [*COLLECTOR_PATHS, "/v1/m", "/v1/projects/KEY/settings", "/v1/pixel/track"]


def test_every_v1_path_answers_a_preflight(app: App) -> None:
    for path in PREFLIGHT_PATHS:
        answer = app.client.options(
            path,
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type"},
        )  # fmt: skip
        assert answer.status_code in (200, 204), path
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        allowed = answer.headers["access-control-allow-headers"].lower().split(",")
        assert {"authorization", "content-type"} <= {h.strip() for h in allowed}, path
        assert "POST" in answer.headers["access-control-allow-methods"]


def test_a_preflight_without_requested_headers_still_allows_authorization(app: App) -> None:
    answer = app.client.options("/v1/batch", headers={"Origin": ORIGIN})
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()


def test_every_post_answer_carries_cors(app: App) -> None:
    headers = {"Origin": ORIGIN, **basic(app.write_key)}
    for path in COLLECTOR_PATHS:
        batch = path in ("/v1/batch", "/v1/import", "/v1/b")
        good = {"batch": [track()]} if batch else track()
        for body, status in [(json.dumps(good).encode(), 200), (b"{", 400), (b"", 400)]:
            answer = app.client.post(path, content=body, headers=headers)
            assert answer.status_code == status, (path, body)
            assert answer.headers["access-control-allow-origin"] == ORIGIN, (path, body)
        no_key = app.client.post(path, json=good, headers={"Origin": ORIGIN})
        assert_error(no_key, 401)
        assert no_key.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/nowhere"), ("GET", "/v1/track"), ("DELETE", "/v1/batch")]
)
def test_cors_even_on_unknown_v1_routes(app: App, method: str, path: str) -> None:
    """cors.py: `Access-Control-Allow-Origin` on every `/v1` answer, errors included, so a page
    sees the JSON error instead of an opaque CORS failure."""
    answer = app.client.request(method, path, headers={"Origin": ORIGIN})
    assert answer.status_code in (404, 405)
    assert_error(answer, answer.status_code)
    assert answer.headers.get("access-control-allow-origin") == ORIGIN


# --- analytics.js settings, metrics, pixel ---------------------------------------------------


def test_the_settings_answer_is_what_analytics_js_needs(app: App) -> None:
    answer = app.client.get(f"/v1/projects/{app.write_key}/settings", headers={"Origin": ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    body = answer.json()
    assert set(body["integrations"]) == {"Segment.io"}
    segment = body["integrations"]["Segment.io"]
    assert segment["apiKey"] == app.write_key
    assert segment.get("type") != "browser"
    assert body["apiHost"] == "testserver.local/v1"  # host and /v1, no scheme
    assert "://" not in segment["apiHost"]
    assert body["protocol"] == "http"
    assert body["metrics"]["sampleRate"] == 0


def test_the_settings_answer_uses_the_public_url(tmp_path: Path) -> None:
    with running_app(tmp_path, public_url="https://cairn.example.com/") as app:
        body = app.client.get(f"/v1/projects/{app.write_key}/settings").json()
        assert (body["apiHost"], body["protocol"]) == ("cairn.example.com/v1", "https")


def test_settings_for_an_unknown_key_is_401_with_cors(app: App) -> None:
    answer = app.client.get("/v1/projects/nope/settings", headers={"Origin": ORIGIN})
    assert_error(answer, 401, "invalid_write_key")
    assert answer.headers["access-control-allow-origin"] == ORIGIN


def test_metrics_are_accepted_and_ignored(app: App) -> None:
    for body in [b"", b"garbage", b'{"series": []}', b"\xff" * 100]:
        answer = app.client.post("/v1/m", content=body, headers={"Content-Type": "text/plain"})
        assert (answer.status_code, answer.json()) == (200, {"success": True})
    assert app.events() == []


def _pixel_data(app: App, message_id: str, **fields: Any) -> str:
    message = {**track(messageId=message_id), "writeKey": app.write_key, **fields}
    return base64.urlsafe_b64encode(json.dumps(message).encode()).decode().rstrip("=")


def test_the_pixel_stores_its_event_and_answers_a_gif(app: App) -> None:
    answer = app.client.get(f"/v1/pixel/track?data={_pixel_data(app, 'px-1')}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/gif")
    assert answer.content == GIF
    assert [e["messageId"] for e in app.events()] == ["px-1"]


PIXEL_QUERIES = [
    "",
    "?data=",
    "?data=!!!not-base64!!!",
    "?data=" + base64.b64encode(b"not json").decode(),
    "?data=" + base64.b64encode(b'{"userId": "u", "event": "e", "writeKey": "nope"}').decode(),
    "?data=" + base64.b64encode(b"\xff\xfe\x00").decode(),
    "?data=%ZZ",
    "?data=" + "A" * 5000,
]


def test_the_pixel_always_answers_a_gif(app: App) -> None:
    for kind in ["track", "t", "page", "nonsense", "batch", "m"]:
        for query in PIXEL_QUERIES:
            answer = app.client.get(f"/v1/pixel/{kind}{query}")
            assert (answer.status_code, answer.content) == (200, GIF), (kind, query)
    assert app.events() == []


def test_a_pixel_with_a_bad_message_is_listed_as_rejected(app: App) -> None:
    answer = app.client.get(f"/v1/pixel/track?data={_pixel_data(app, 'px-bad', event=7)}")
    assert answer.content == GIF
    assert [r["code"] for r in app.rejected()] == ["invalid_event"]


# --- every answer the admin API gives is the one error shape ----------------------------------


def test_the_admin_api_needs_a_valid_token(app: App) -> None:
    for path in ["/api/v1/events", "/api/v1/rejected", "/api/v1/sources", "/api/v1/stats"]:
        for token in [None, "", "cairn_wrong", "x" * 5000, app.write_key]:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            assert_error(app.client.get(path, headers=headers), 401)
    assert_error(app.client.post("/api/v1/sources", json={"name": "x"}), 401)
    assert_error(app.client.patch("/api/v1/sources/x", json={"enabled": False}), 401)


def test_bad_event_queries_are_400(app: App) -> None:
    for query in ["cursor=abc", "cursor=-1", "cursor=99999999999999999999", "limit=0",
                  "limit=1001", "limit=x", "type=launch", "after=1e3"]:  # fmt: skip
        assert_error(app.client.get(f"/api/v1/events?{query}", headers=app.auth), 400)
