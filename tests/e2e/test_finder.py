"""The finder end to end: search and live segments through a real `cairn serve`, fed by Segment's
Python library, and `cairn find`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from segment.analytics import Client as SegmentClient

from tests.support.server import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

QUERY = 'plan = "pro" and did "Order Completed" at least 2 times in last 30 days where total > 100'


def _wait(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    return wait_for(check, timeout)


def _world(server: ServerProcess) -> Any:
    client = SegmentClient(server.write_key, host=server.url, sync_mode=True, max_retries=1)
    client.identify(user_id="ann", traits={"plan": "pro", "email": "ann@acme.com"})
    client.identify(user_id="bob", traits={"plan": "pro", "email": "=cmd|' /C calc'!A0"})
    client.identify(user_id="cy", traits={"plan": "free"})
    for total in (150, 300):
        client.track(user_id="ann", event="Order Completed", properties={"total": total})
    client.track(user_id="bob", event="Order Completed", properties={"total": 150})
    client.track(user_id="bob", event="Order Completed", properties={"total": 50})
    client.group(user_id="cy", group_id="acme", traits={"industry": "Retail"})
    with server.api() as api:
        _wait(lambda: api.get("/api/v1/pipeline").json()["lag_events"] == 0)
    return client


def _names(api: httpx.Client, body: dict[str, Any]) -> set[str]:
    answer = api.post("/api/v1/people/search", json=body)
    assert answer.status_code == 200, answer.text
    ids = {p["id"] for p in answer.json()["data"]}
    names = set()
    for pid in ids:
        person = api.get(f"/api/v1/people/{pid}").json()
        names |= {i["value"] for i in person["identifiers"] if i["kind"] == "user_id"}
    return names


def test_search_text_json_csv_and_explain(server: ServerProcess) -> None:
    _world(server)
    with server.api() as api:
        assert _names(api, {"query": QUERY}) == {"ann"}
        condition = {"and": [{"trait": "plan", "op": "=", "value": "pro"},
                             {"did": "Order Completed", "count": {"op": "at_least", "n": 2}}]}  # fmt: skip
        assert _names(api, {"condition": condition}) == {"ann", "bob"}
        page = api.post("/api/v1/people/search", json={"query": 'plan = "pro"', "limit": 1}).json()
        assert page["total"] == 2
        assert len(page["data"]) == 1
        rest = api.post("/api/v1/people/search",
                        json={"query": 'plan = "pro"', "cursor": page["next_cursor"]}).json()  # fmt: skip
        assert len(rest["data"]) == 1
        assert rest["data"][0]["id"] != page["data"][0]["id"]

        exported = api.post("/api/v1/people/search?format=csv", json={"query": "plan exists"})
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(exported.text)))
        assert rows[0][:3] == ["id", "email", "name"]
        assert len(rows) == 4
        assert "'=cmd|' /C calc'!A0" in [r[1] for r in rows]  # a formula cell is defused

        accounts = api.post("/api/v1/accounts/search", json={"query": 'industry = "Retail"'}).json()
        assert [a["group_id"] for a in accounts["data"]] == ["acme"]

        plan = api.post("/api/v1/people/search", json={"query": QUERY, "explain": True}).json()
        assert "pro" not in plan["sql"]
        assert "Order Completed" not in plan["sql"]
        assert "pro" in plan["params"].values()


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"query": 'plan == "pro"'}, "invalid_condition", "column"),
        ({"query": 'plan = "pro" and'}, "invalid_condition", "expected"),
        ({"query": "did Order Completed"}, "invalid_condition", "expected"),
        ({"query": "(" * 5000}, "invalid_condition", ""),
        (
            {"query": 'plan = "pro"', "condition": {"trait": "x", "op": "exists"}},
            "invalid_query",
            "",
        ),
        ({}, "invalid_query", ""),
        ({"condition": {"trait": "plan", "op": "like", "value": "x"}}, "invalid_condition", "/op"),
        (
            {"condition": {"trait": "x", "op": "in", "value": list(range(1001))}},
            "invalid_condition",
            "1000",
        ),
        ({"query": 'plan = "pro"', "limit": 0}, "invalid_limit", ""),
        ({"query": 'plan = "pro"', "cursor": "nope"}, "invalid_cursor", ""),
        ({"query": 'plan = "pro"', "extra": 1}, "invalid_body", ""),
    ],
)
def test_bad_searches_answer_400_with_where(
    server: ServerProcess, body: dict[str, Any], code: str, needle: str
) -> None:
    with server.api() as api:
        answer = api.post("/api/v1/people/search", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] in {code, "bad_request", "invalid_body"}
    assert needle in answer.json()["message"]
    if body.get("query") == 'plan == "pro"':
        assert answer.json()["position"] == 6  # the second "="


def test_live_segment_membership_and_backfill(server: ServerProcess) -> None:
    client = _world(server)
    with server.api() as api:
        created = api.post("/api/v1/segments", json={"name": "Big Spenders", "query": QUERY})
        assert created.status_code == 201, created.text
        segment = created.json()
        assert segment["query"] == QUERY
        sid = segment["id"]
        # backfill from history, with progress visible
        done = _wait(
            lambda: (
                (s := api.get(f"/api/v1/segments/{sid}").json())["backfill"]["state"] == "done"
                and s
            )
        )
        assert done["backfill"]["total"] == 3
        assert done["members"] == 1
        # an event that changes the answer updates membership within a second
        client.track(user_id="bob", event="Order Completed", properties={"total": 999})
        started = time.monotonic()
        _wait(lambda: api.get(f"/api/v1/segments/{sid}").json()["members"] == 2, timeout=5)
        assert time.monotonic() - started < 1.5
        members = api.get(f"/api/v1/segments/{sid}/members").json()
        assert members["total"] == 2
        bob = members["data"][-1]["id"]
        timeline = api.get(f"/api/v1/people/{bob}/timeline", params={"types": "entered_segment"})
        assert [i["data"]["name"] for i in timeline.json()["data"]] == ["Big Spenders"]

        assert (
            api.post(
                "/api/v1/segments", json={"name": "Big Spenders", "query": "x exists"}
            ).status_code
            == 409
        )
        nested = api.post(
            "/api/v1/segments", json={"name": "VIP", "query": 'in segment "Big Spenders"'}
        )
        assert nested.status_code == 201
        assert api.delete(f"/api/v1/segments/{sid}").status_code == 409
        renamed = api.patch(
            f"/api/v1/segments/{nested.json()['id']}", json={"name": "Very Important"}
        )
        assert renamed.json()["name"] == "Very Important"
        assert api.delete(f"/api/v1/segments/{nested.json()['id']}").status_code == 204
        assert api.delete(f"/api/v1/segments/{sid}").status_code == 204
        assert api.get(f"/api/v1/segments/{sid}").status_code == 404
        assert api.get("/api/v1/segments").json()["data"] == []


def test_cli_find(server: ServerProcess) -> None:
    _world(server)

    def cairn(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cairn", "find", *args, "--data-dir", str(server.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    listed = cairn(QUERY, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["total"] == 1
    exported = cairn('plan = "pro"', "--csv")
    assert len(exported.stdout.strip().splitlines()) == 3
    explained = cairn(QUERY, "--explain")
    assert "SELECT" in explained.stdout
    assert "Order Completed" in explained.stdout.splitlines()[-1]  # in the parameters only
    bad = cairn('plan = "pro" and and')
    assert bad.returncode == 1
    assert "expected" in bad.stderr
