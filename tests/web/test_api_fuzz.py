"""Fuzzing: nothing a client sends makes Cairn answer 5xx.

Schemathesis drives every operation of the app's own OpenAPI document (admin API with a valid
token; collector routes with a valid write key); hypothesis throws raw bytes and arbitrary JSON
at the collector, where the schema says little about bodies. Kept small: well under a minute.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi

from cairn.app import build_app, open_runtime
from cairn.settings import Settings
from cairn.workspaces import bootstrap
from tests.support.collector import App, running_app

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
COLLECTOR_PATHS = ["/v1/track", "/v1/t", "/v1/identify", "/v1/page", "/v1/screen", "/v1/g",
                   "/v1/alias", "/v1/batch", "/v1/import", "/v1/b", "/v1/m"]  # fmt: skip
BATCH_PATHS = {"/v1/batch", "/v1/import", "/v1/b"}


@dataclass
class Target:
    schema: schemathesis.BaseSchema
    token: str
    write_key: str


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    """The real app behind schemathesis's ASGI transport, which runs its lifespan (and whose
    pytest plugin ends it after each test: hence one app per test)."""
    config = Settings(data_dir=tmp_path)
    runtime = open_runtime(config)
    first = bootstrap(runtime.storage)
    assert first is not None
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", build_app(config, runtime))
    yield Target(schema, first.token, first.source.write_key)
    asgi.shutdown_lifespans()


def _fuzz_operations(target: Target, tag: str, headers: dict[str, str], examples: int) -> None:
    """Every operation tagged `tag`, with valid and invalid generated data; all 5xx collected."""
    failures: list[str] = []
    for result in target.schema.include(tag=tag).get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(FUZZ, max_examples=examples)
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(headers=headers)
                _assert_no_server_error(case, response)

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to make invalid
            except AssertionError as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert failures == [], "\n\n".join(failures)


def _assert_no_server_error(case: schemathesis.Case, response: Any) -> None:
    assert response.status_code < 500, (
        f"{response.status_code} {response.text[:300]}\n{case.as_curl_command()}"
    )
    if response.status_code >= 400:
        assert set(response.json()) == {"code", "message"}, response.text[:300]


def test_admin_api_never_answers_5xx(target: Target) -> None:
    _fuzz_operations(target, "admin", {"Authorization": f"Bearer {target.token}"}, examples=40)


def test_collector_routes_never_answer_5xx(target: Target) -> None:
    _fuzz_operations(target, "collector", {"X-Write-Key": target.write_key}, examples=15)


# --- raw bodies: hypothesis alone ------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    with running_app(tmp_path_factory.mktemp("raw")) as running:
        yield running


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**80), max_value=2**80)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
        max_leaves=12,
    )  # fmt: skip


JSON = _json_values()
FIELDS = ["type", "userId", "anonymousId", "event", "properties", "traits", "context",
          "integrations", "groupId", "previousId", "name", "category", "timestamp", "sentAt",
          "originalTimestamp", "messageId", "writeKey", "_metadata"]  # fmt: skip
TYPES = st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "TRACK", ""])
TIMES = st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123+05:30", "0001-01-01",
                         "9999-12-31T23:59:59.999999-12:00", "2024-13-45", "", "now"])  # fmt: skip
MESSAGE = st.dictionaries(
    st.sampled_from(FIELDS),
    JSON | TYPES | TIMES | st.text(min_size=1, max_size=10),
    max_size=10,
)


def _post(app: App, path: str, body: bytes, headers: dict[str, str]) -> Any:
    answer = app.client.post(path, content=body, headers=headers)
    assert answer.status_code < 500, (path, body[:300], answer.text[:300])
    assert answer.status_code in (200, 400, 401, 413), (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    payload = answer.json()
    if answer.status_code != 200:
        assert set(payload) == {"code", "message"}, payload
    return payload


@FUZZ
@given(
    path=st.sampled_from(COLLECTOR_PATHS),
    body=st.binary(max_size=400),
    encoding=st.sampled_from([None, "gzip", "deflate", "identity", "br", "gzip, gzip"]),
    squeeze=st.booleans(),
    content_type=st.sampled_from(["application/json", "text/plain", "", "image/png"]),
)
def test_random_bytes_never_5xx(
    app: App, path: str, body: bytes, encoding: str | None, squeeze: bool, content_type: str
) -> None:
    headers = {"X-Write-Key": app.write_key, "Content-Type": content_type}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    _post(app, path, gzip.compress(body) if squeeze else body, headers)


@FUZZ
@given(path=st.sampled_from(COLLECTOR_PATHS), value=JSON, wrap=st.booleans())
def test_arbitrary_json_never_5xx(app: App, path: str, value: Any, wrap: bool) -> None:
    body = {"batch": value, "writeKey": app.write_key} if wrap else value
    _post(app, path, json.dumps(body).encode(), {"X-Write-Key": app.write_key})


def _counts(app: App) -> tuple[int, int]:
    stats = app.client.get("/api/v1/stats", headers=app.auth).json()
    return stats["events"], stats["writer"]["rejected"]


@FUZZ
@given(
    messages=st.lists(MESSAGE, max_size=8),
    envelope=st.dictionaries(st.sampled_from(["context", "integrations", "sentAt"]), JSON | TIMES),
)
def test_every_message_is_stored_or_rejected(
    app: App, messages: list[dict[str, Any]], envelope: dict[str, Any]
) -> None:
    """Message-shaped junk: each item is either stored or listed as rejected, never lost."""
    for message in messages:
        message.pop("messageId", None)  # generated ids cannot collide, so no dedupe here
    events, rejected = _counts(app)
    body = json.dumps({**envelope, "batch": messages, "writeKey": app.write_key}).encode()
    payload = _post(app, "/v1/batch", body, {})
    assert payload["success"] is True, payload
    refused = payload.get("rejected", [])
    assert [r["index"] for r in refused] == sorted({r["index"] for r in refused})
    events_after, rejected_after = _counts(app)
    assert events_after - events + len(refused) == len(messages)
    assert rejected_after - rejected == len(refused)


@FUZZ
@given(message=MESSAGE, path=st.sampled_from(sorted(set(COLLECTOR_PATHS) - BATCH_PATHS)))
def test_single_message_paths_never_5xx(app: App, message: dict[str, Any], path: str) -> None:
    _post(app, path, json.dumps(message).encode(), {"X-Write-Key": app.write_key})


def test_the_fuzz_targets_are_real(app: App) -> None:
    """Guard against a fuzz run that only ever hits 401s: valid input is stored."""
    answer = app.client.post(
        "/v1/track",
        json={"userId": "u", "event": "Fuzz Checked", "messageId": "fuzz-check"},
        headers={"X-Write-Key": app.write_key},
    )
    assert answer.json() == {"success": True}
    assert [e["messageId"] for e in app.events(event="Fuzz Checked")] == ["fuzz-check"]
