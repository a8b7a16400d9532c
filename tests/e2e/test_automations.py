"""Automations end to end: a real `cairn serve` (loopback targets allowed through the setting), a
real HTTP receiver, Segment's Python library as the client, `kill -9` mid-run, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from segment.analytics import Client as SegmentClient

from tests.support.receiver import Answer, Receiver, receiving
from tests.support.server import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e
ALLOW = {"CAIRN_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}


def _wait(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    return wait_for(check, timeout)


def _client(server: ServerProcess) -> SegmentClient:
    return SegmentClient(server.write_key, host=server.url, sync_mode=True, max_retries=1)


def _cairn(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _runs(server: ServerProcess, automation_id: int) -> dict[str, Any]:
    with server.api() as api:
        found = api.get(f"/api/v1/automations/{automation_id}/runs")
        found.raise_for_status()
        body: dict[str, Any] = found.json()
        return body


@pytest.fixture
def receiver() -> Any:
    with receiving() as found:
        yield found


@pytest.fixture
def hooked(tmp_path: Path) -> Any:
    proc = ServerProcess(data_dir=tmp_path / "data", env=ALLOW).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_api_runs_timeline_and_errors(hooked: ServerProcess, receiver: Receiver) -> None:
    definition = {
        "name": "Big orders", "state": "live",
        "trigger": {"event": "Order Completed", "where": "total > 100"},
        "steps": [{"webhook": {"url": receiver.url + "/orders",
                               "body": {"total": "{{ event.properties.total }}",
                                        "email": "{{ person.traits.email }}"}}},
                  {"message": {"title": "Thanks"}}],
    }  # fmt: skip
    with hooked.api() as api:
        made = api.post("/api/v1/automations", json=definition)
        assert made.status_code == 201, made.text
        aid = made.json()["id"]
        bad = api.post("/api/v1/automations", json={**definition, "name": "x", "frequency": "?"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_automation"
        assert bad.json()["at"] == "/frequency"
        assert api.get("/api/v1/automations/999").json()["code"] == "not_found"
    client = _client(hooked)
    client.identify(user_id="ann", traits={"email": "ann@acme.com"})
    client.track(user_id="ann", event="Order Completed", properties={"total": 250})
    client.track(user_id="ann", event="Order Completed", properties={"total": 5})
    (got,) = receiver.wait_for("/orders", 1)
    assert got.json() == {"total": 250, "email": "ann@acme.com"}
    runs = _wait(lambda: [r for r in _runs(hooked, aid)["data"] if r["state"] == "completed"])
    (run,) = runs
    assert [s["outcome"] for s in run["steps"]] == ["queued", "delivered", "stored"]
    assert run["deliveries"][0]["attempt_log"][0]["status_code"] == 200
    assert _runs(hooked, aid)["counts"]["entered"] == 1
    with hooked.api() as api:
        timeline = api.get(f"/api/v1/people/{run['person_id']}/timeline",
                           params={"types": "automation_entered,automation_completed"}).json()  # fmt: skip
        assert {item["kind"] for item in timeline["data"]} == {
            "automation_entered", "automation_completed"}  # fmt: skip
        paused = api.post(f"/api/v1/automations/{aid}/state", json={"state": "paused"})
        assert paused.json()["state"] == "paused"
        assert api.get("/api/v1/deliveries", params={"status": "dead"}).json()["data"] == []


def test_kill_9_mid_run_then_restart(hooked: ServerProcess, receiver: Receiver) -> None:
    receiver.on("/held", Answer(200, delay=30), Answer(200))  # the first answer never comes in time
    steps = [{"webhook": {"url": receiver.url + "/held"}}, {"wait": "2s"},
             {"webhook": {"url": receiver.url + "/after"}}]  # fmt: skip
    with hooked.api() as api:
        for name, body in (("held", steps), ("late", [{"wait": "1s"},
                           {"webhook": {"url": receiver.url + "/late"}}])):  # fmt: skip
            api.post("/api/v1/automations", json={"name": name, "state": "live",
                     "trigger": {"event": "Signed Up"}, "steps": body}).raise_for_status()  # fmt: skip
    _client(hooked).track(user_id="bob", event="Signed Up")
    receiver.wait_for("/held", 1)
    hooked.kill()  # between sending and recording the first delivery; the 1 s wait is pending
    time.sleep(1.5)  # the wait expires while the server is down
    restarted = time.monotonic()
    hooked.start()
    receiver.wait_for("/late", 1)
    assert time.monotonic() - restarted < 15
    receiver.wait_for("/after", 1, timeout=60)
    assert len(receiver.at("/held")) == 2  # sent again after the restart...
    assert len(receiver.unique("/held")) == 1  # ...with the same key: exactly once after dedupe
    assert len(receiver.at("/late")) == 1
    assert len(receiver.at("/after")) == 1


def test_cli_apply_list_dead_letters_and_replay(
    hooked: ServerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    folder = tmp_path / "automations"
    folder.mkdir()
    (folder / "strict.yaml").write_text(
        "name: Strict\nstate: live\ntrigger:\n  event: Pinged\nsteps:\n"
        f"  - webhook:\n      url: {receiver.url}/strict\n  - wait: 1 fortnight\n"
    )
    bad = _cairn("automations", "apply", str(folder), data_dir=hooked.data_dir)
    assert bad.returncode == 1
    assert "/steps/1/wait (line 8)" in bad.stderr
    (folder / "strict.yaml").write_text((folder / "strict.yaml").read_text().replace(
        "  - wait: 1 fortnight\n", ""))  # fmt: skip
    applied = _cairn("automations", "apply", str(folder), "--json", data_dir=hooked.data_dir)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)[0]["result"] == "created"
    again = _cairn("automations", "apply", str(folder), "--json", data_dir=hooked.data_dir)
    assert json.loads(again.stdout)[0]["result"] == "unchanged"
    listed = _cairn("automations", "list", data_dir=hooked.data_dir)
    assert "Strict" in listed.stdout
    receiver.on("/strict", Answer(400), Answer(200))
    _client(hooked).track(user_id="cy", event="Pinged")
    dead = _wait(lambda: json.loads(_cairn("deliveries", "list", "--dead", "--json",
                                           data_dir=hooked.data_dir).stdout))  # fmt: skip
    replayed = _cairn("deliveries", "replay", str(dead[0]["id"]), data_dir=hooked.data_dir)
    assert replayed.returncode == 0, replayed.stderr
    receiver.wait_for("/strict", 2)
    assert len(receiver.unique("/strict")) == 1
