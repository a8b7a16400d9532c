"""Batching, gzip, auth, and the retry policy, against a scripted transport."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest

from cairn_analytics import Client, DeliveryFailed, MessagesRejected
from cairn_analytics.transport import Response
from tests.sdks.python.conftest import Errors, FakeTransport, unreachable

MakeClient = Callable[..., Client]


def test_batches_by_count(make_client: MakeClient, transport: FakeTransport) -> None:
    client = make_client(upload_size=500, upload_interval=5)
    for n in range(1200):
        client.track("u", "E", {"n": n})
    assert client.flush(10)
    assert [len(p.batch) for p in transport.posts] == [500, 500, 200]
    assert [m["properties"]["n"] for m in transport.delivered()] == list(range(1200))


def test_batches_stay_under_the_request_limit(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    client = make_client(upload_size=2500, gzip=False)
    for _ in range(100):
        client.track("u", "E", {"blob": "x" * 20_000})
    assert client.flush(10)
    assert sum(len(p.batch) for p in transport.posts) == 100
    assert len(transport.posts) >= 5
    assert all(len(p.batch) * 20_000 < 500_000 for p in transport.posts)


def test_a_partial_batch_goes_after_the_interval(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    client = make_client(upload_interval=0.1)
    client.track("u", "E")
    deadline = time.monotonic() + 5
    while not transport.posts and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(transport.delivered()) == 1


@pytest.mark.parametrize("gzip", [True, False])
def test_request_headers(make_client: MakeClient, transport: FakeTransport, gzip: bool) -> None:
    client = make_client(gzip=gzip)
    client.track("u", "E")
    assert client.flush(5)
    [post] = transport.posts
    assert post.path == "/v1/batch"
    assert post.headers["Authorization"] == "Basic " + base64.b64encode(b"wk:").decode()
    assert post.headers.get("Content-Encoding") == ("gzip" if gzip else None)
    assert post.body["sentAt"].endswith("Z")


def test_retries_keep_message_id_and_timestamp(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    transport.answers = [unreachable(), Response(500), Response(503), Response(429)]
    client = make_client()
    client.track("u", "E")
    assert client.flush(10)
    assert len(transport.posts) == 5
    first, last = transport.posts[0].batch[0], transport.posts[-1].batch[0]
    assert first == last, "a retry resends the same message (id and timestamp)"
    assert client.stats().delivered == 1


def test_retry_after_is_honoured(make_client: MakeClient, transport: FakeTransport) -> None:
    transport.answers = [Response(429, headers={"retry-after": "0.5"})]
    client = make_client()
    started = time.monotonic()
    client.track("u", "E")
    assert client.flush(10)
    assert time.monotonic() - started >= 0.5
    assert client.stats().delivered == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_give_up_and_report(
    make_client: MakeClient, transport: FakeTransport, errors: Errors, status: int
) -> None:
    transport.answers = [Response(status, b'{"code":"invalid_body","message":"nope"}')]
    client = make_client()
    client.track("u", "E")
    assert client.flush(5)
    assert len(transport.posts) == 1
    [(error, messages)] = errors.of(DeliveryFailed)
    assert isinstance(error, DeliveryFailed)
    assert (error.status, error.code) == (status, "invalid_body")
    assert messages[0]["event"] == "E"
    assert client.stats().failed == 1


def test_retries_run_out(make_client: MakeClient, transport: FakeTransport, errors: Errors) -> None:
    transport.answer_with = lambda post: Response(503)
    client = make_client(max_retries=2)
    client.track("u", "E")
    assert client.flush(10)
    assert len(transport.posts) == 3
    assert len(errors.of(DeliveryFailed)) == 1


def test_network_errors_run_out(
    make_client: MakeClient, transport: FakeTransport, errors: Errors
) -> None:
    transport.answer_with = lambda post: unreachable()
    client = make_client(max_retries=1)
    client.track("u", "E")
    assert client.flush(10)
    [(error, _)] = errors.of(DeliveryFailed)
    assert isinstance(error, DeliveryFailed)
    assert error.status is None


def test_messages_the_server_refused_are_reported(
    make_client: MakeClient, transport: FakeTransport, errors: Errors
) -> None:
    body = b'{"success":true,"rejected":[{"index":1,"code":"missing_event","message":"m"}]}'
    transport.answers = [Response(200, body)]
    client = make_client(upload_interval=5)
    for n in range(3):
        client.track("u", "E", {"n": n})
    assert client.flush(5)
    [(_error, messages)] = errors.of(MessagesRejected)
    assert [m["properties"]["n"] for m in messages] == [1]
    assert (client.stats().delivered, client.stats().failed) == (2, 1)


def test_too_large_for_the_server_splits_the_batch(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    transport.answer_with = lambda post: Response(413 if len(post.batch) > 2 else 200)
    client = make_client(upload_interval=5)
    for n in range(8):
        client.track("u", "E", {"n": n})
    assert client.flush(5)
    assert [m["properties"]["n"] for m in transport.delivered()] == list(range(8))
    assert client.stats().delivered == 8


def test_sync_mode_sends_before_returning(
    make_client: MakeClient, transport: FakeTransport
) -> None:
    client = make_client(sync_mode=True)
    assert client.track("u", "E") is True
    assert len(transport.delivered()) == 1


def test_sync_mode_failure_is_reported_not_raised(
    make_client: MakeClient, transport: FakeTransport, errors: Errors
) -> None:
    transport.answers = [Response(400)]
    client = make_client(sync_mode=True)
    assert client.track("u", "E") is False
    assert len(errors.of(DeliveryFailed)) == 1


def test_send_false_sends_nothing(make_client: MakeClient, transport: FakeTransport) -> None:
    client = make_client(send=False)
    assert client.track("u", "E") is True
    client.flush()
    assert transport.posts == []
