"""People end to end: Segment's Python library sends, `cairn serve` (or a `cairn worker`) resolves,
the people API and CLI read, unmerge undoes, identity verification guards identify."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client as SegmentClient

from cairn.identity.rules import user_hash
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e


def _settled(server: ServerProcess, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the pipeline has processed everything stored."""
    deadline = time.monotonic() + timeout
    with server.api() as api:
        while True:
            status = api.get("/api/v1/pipeline").json()
            if status["lag_events"] == 0 and status["last_seq"] > 0:
                return dict(status)
            if time.monotonic() > deadline:
                raise AssertionError(f"pipeline did not catch up: {status}")
            time.sleep(0.1)


def _segment(server: ServerProcess) -> Any:
    return SegmentClient(server.write_key, host=server.url, sync_mode=True, max_retries=1)


def _journey(client: Any) -> None:
    client.page(anonymous_id="browser-1", name="Pricing")
    client.track(anonymous_id="browser-1", event="Plan Viewed", properties={"plan": "pro"})
    client.identify(user_id="ada", traits={"email": "ada@example.com", "plan": "free"})
    client.identify(user_id="ada", anonymous_id="browser-1", traits={"firstName": "Ada"})
    client.group(user_id="ada", group_id="acme", traits={"name": "Acme", "employees": 40})
    client.track(user_id="ada", event="Order Completed", properties={"revenue": 99.5},
                 context={"groupId": "acme"})  # fmt: skip


def test_segment_library_to_profile_timeline_and_unmerge(server: ServerProcess) -> None:
    _journey(_segment(server))
    status = _settled(server)
    assert status["dead_letters"] == 0
    with server.api() as api:
        person = api.get("/api/v1/people/lookup", params={"user_id": "ada"}).json()
        assert {(i["kind"], i["value"]) for i in person["identifiers"]} == {
            ("user_id", "ada"), ("anonymous_id", "browser-1"),
        }  # fmt: skip
        assert person["traits"] == {"email": "ada@example.com", "plan": "free", "first_name": "Ada"}
        assert person["revenue"] == 99.5
        assert person["accounts"][0]["group_id"] == "acme"
        assert (
            api.get("/api/v1/people/lookup", params={"anonymous_id": "browser-1"}).json() == person
        )
        assert api.get(f"/api/v1/people/{person['id']}").json() == person
        by_email = api.get("/api/v1/people/lookup", params={"email": "ADA@example.com"})
        assert by_email.json()["id"] == person["id"]

        timeline = api.get(f"/api/v1/people/{person['id']}/timeline", params={"limit": 4}).json()
        assert len(timeline["data"]) == 4
        rest = api.get(
            f"/api/v1/people/{person['id']}/timeline",
            params={"limit": 50, "cursor": timeline["next_cursor"]},
        ).json()
        items = timeline["data"] + rest["data"]
        assert sum(1 for i in items if i["kind"] == "event") == 6
        assert {"merged", "trait_changed", "joined_account"} <= {i["kind"] for i in items}

        account = api.get("/api/v1/accounts/acme").json()
        assert account["traits"] == {"name": "Acme", "employees": 40}
        assert [m["person_id"] for m in account["members"]] == [person["id"]]
        assert api.get("/api/v1/accounts").json()["data"][0]["group_id"] == "acme"
        # every event of its members (ada: all six, the merged browser included)
        assert len(api.get("/api/v1/accounts/acme/timeline").json()["data"]) == 6
        assert api.get("/api/v1/people").json()["data"][0]["id"] == person["id"]

        (merge,) = person["merged_from"]
        merge_id = merge["merge_id"]
        path = f"/api/v1/people/{person['id']}/unmerge"
        # two operators click at once: one undoes the merge, the other is told it is done
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: api.post(path, json={"merge_id": merge_id}), [0, 1]))
        assert sorted(a.status_code for a in answers) == [200, 409]
        done = next(a.json() for a in answers if a.status_code == 200)
        assert done["restored"]["traits"] == {}
        assert done["restored"]["event_counts"] == {
            "Plan Viewed": done["restored"]["event_counts"]["Plan Viewed"]
        }
        assert done["person"]["merged_from"] == []
        metrics = api.get("/metrics").text
        assert "cairn_pipeline_lag_events 0" in metrics


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/v1/people/abc", None, 404),
        ("GET", "/api/v1/people/99999999999999999999999", None, 404),
        ("GET", "/api/v1/people/%C2%B2", None, 404),  # "²": str.isdigit, but not int
        ("GET", "/api/v1/segments/%D9%A1%C2%B2", None, 404),
        ("GET", "/api/v1/people/lookup", None, 400),
        ("GET", "/api/v1/people/lookup?user_id=a&anonymous_id=b", None, 400),
        ("GET", "/api/v1/people/lookup?user_id=nobody", None, 404),
        ("GET", "/api/v1/people?cursor=garbage", None, 400),
        ("GET", "/api/v1/people?limit=100000", None, 400),
        ("GET", "/api/v1/people/1/timeline?cursor=1.2.3", None, 400),
        ("GET", "/api/v1/people/1/timeline?types=bogus", None, 400),
        ("GET", "/api/v1/people/1/timeline?since=yesterday", None, 400),
        ("GET", "/api/v1/people/1/timeline?since=-%C2%B2", None, 400),
        ("GET", "/api/v1/people/1/timeline?until=" + "9" * 30, None, 400),
        ("GET", "/api/v1/accounts/%00%ff", None, 404),
        ("GET", "/api/v1/accounts?cursor=x", None, 400),
        ("POST", "/api/v1/people/1/unmerge", b"{", 400),
        ("POST", "/api/v1/people/1/unmerge", b'{"merge_id": 5}', 400),
        ("POST", "/api/v1/people/1/unmerge", b'{"merge_id": "x", "extra": 1}', 400),
        ("POST", "/api/v1/people/1/unmerge", b'{"merge_id": "nope"}', 404),
        ("POST", "/api/v1/pipeline/dead-letters/replay", b'{"ids": [424242]}', 404),
        ("POST", "/api/v1/pipeline/dead-letters/replay", b'{"ids": "all"}', 400),
    ],
)
def test_bad_requests_get_clear_errors(
    server: ServerProcess, method: str, path: str, body: bytes | None, status: int
) -> None:
    _journey(_segment(server))
    _settled(server)
    with server.api() as api:
        answer = api.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == status, answer.text
    assert set(answer.json()) >= {"code", "message"}
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/api/v1/people").status_code == 401
        assert anonymous.get("/metrics").status_code == 401


def test_identity_verification_rejects_forged_identify(server: ServerProcess) -> None:
    with server.api() as api:
        source = api.get("/api/v1/sources").json()["data"][0]
        premature = api.patch(f"/api/v1/sources/{source['id']}", json={"require_user_hash": True})
        assert premature.status_code == 409
        secret = api.post(f"/api/v1/sources/{source['id']}/identity-secret").json()[
            "identity_secret"
        ]
        changed = api.patch(f"/api/v1/sources/{source['id']}", json={"require_user_hash": True})
        assert changed.json()["require_user_hash"] is True
    good = user_hash(secret, "victim")
    batch = [
        {"type": "identify", "userId": "victim", "anonymousId": "victim-laptop",
         "context": {"user_hash": good}},
        {"type": "identify", "userId": "victim", "anonymousId": "attacker-browser",
         "context": {"user_hash": user_hash("wrong", "victim")}},
        {"type": "identify", "userId": "victim", "anonymousId": "attacker-browser"},
        {"type": "identify", "userId": "victim", "anonymousId": "victim-phone",
         "traits": {"user_hash": good.upper()}},
        {"type": "track", "userId": "victim", "anonymousId": "attacker-browser", "event": "X Done"},
        {"type": "page", "anonymousId": "attacker-browser"},
    ]  # fmt: skip
    answer = httpx.post(
        server.url + "/v1/batch", auth=(server.write_key, ""), json={"batch": batch}
    ).json()
    assert answer["success"] is True
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [
        (1, "user_hash_invalid"), (2, "user_hash_missing"),
    ]  # fmt: skip
    _settled(server)
    with server.api() as api:
        victim = api.get("/api/v1/people/lookup", params={"user_id": "victim"}).json()
        attacker = api.get("/api/v1/people/lookup", params={"anonymous_id": "attacker-browser"})
        rejected = api.get("/api/v1/rejected").json()["data"]
    assert {i["value"] for i in victim["identifiers"]} == {
        "victim",
        "victim-laptop",
        "victim-phone",
    }
    assert attacker.json()["id"] != victim["id"]
    assert {r["code"] for r in rejected} >= {"user_hash_invalid", "user_hash_missing"}


def _cairn(*args: str, data_dir: Path | None = None, database_url: str | None = None) -> Any:
    cmd = [sys.executable, "-m", "cairn", *args]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if database_url is not None:
        cmd += ["--database-url", database_url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_cli_people_show_and_pipeline_status(server: ServerProcess) -> None:
    _journey(_segment(server))
    _settled(server)
    shown = _cairn("people", "show", "user_id:ada", "--json", data_dir=server.data_dir)
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["person"]["traits"]["first_name"] == "Ada"
    assert body["timeline"][0]["kind"] in {"event", "trait_changed", "joined_account", "merged"}
    text = _cairn("people", "show", str(body["person"]["id"]), data_dir=server.data_dir)
    assert "timeline:" in text.stdout
    assert "Order Completed" in text.stdout
    missing = _cairn("people", "show", "user_id:nobody", data_dir=server.data_dir)
    assert missing.returncode == 1
    assert "no person" in missing.stderr
    status = json.loads(_cairn("pipeline", "status", data_dir=server.data_dir).stdout)
    assert status["lag_events"] == 0
    merge_id = body["person"]["merged_from"][0]["merge_id"]
    undone = _cairn("people", "unmerge", str(body["person"]["id"]), merge_id,
                    data_dir=server.data_dir)  # fmt: skip
    assert undone.returncode == 0, undone.stderr
    again = _cairn("people", "unmerge", str(body["person"]["id"]), merge_id,
                   data_dir=server.data_dir)  # fmt: skip
    assert again.returncode == 1
    assert "already undone" in again.stderr


@pytest.mark.postgres
def test_worker_processes_run_the_pipeline_beside_a_serve_without_it(
    tmp_path: Path, postgres_url: str
) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "data", database_url=postgres_url, env={"CAIRN_PIPELINE": "false"}
    ).start()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cairn",
                "worker",
                "--database-url",
                postgres_url,
                "--lease-seconds",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        client = _segment(server)
        _journey(client)
        _settled(server, timeout=30)
        workers[0].terminate()  # whoever held the lease or not, the other carries on
        workers[0].wait(10)
        for i in range(20):
            client.track(user_id="ada", event="Report Exported", properties={"n": i})
        _settled(server, timeout=30)
        with server.api() as api:
            ada = api.get("/api/v1/people/lookup", params={"user_id": "ada"}).json()
        assert ada["event_counts"]["Report Exported"]["count"] == 20
        assert ada["events"] == 26
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
        server.stop()


def test_cli_sources_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _cairn("sources", "create", "web", data_dir=data).returncode == 0
    early = _cairn("sources", "verify", "web", "--require", data_dir=data)
    assert early.returncode == 1
    assert "identity secret" in early.stderr
    made = _cairn("sources", "verify", "web", "--rotate", "--require", "--json", data_dir=data)
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert record["require_user_hash"] is True
    assert record["identity_secret"].startswith("idv_")
    shown = _cairn("sources", "verify", "web", "--no-require", data_dir=data)
    assert "not required" in shown.stdout
    assert "idv_" not in shown.stdout
    assert _cairn("sources", "verify", "nope", data_dir=data).returncode == 1
