"""The automations router in-process: filters, errors in the one JSON shape, no 5xx on bad input."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.testing import TestClient

from cairn.storage.sqlite import SQLiteStorage
from cairn.web.automations import automations_router
from cairn.web.errors import EXCEPTION_HANDLERS
from cairn.workspaces import bootstrap


def test_filters_and_errors(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "cairn.db")
    storage.migrate()
    made_first = bootstrap(storage)
    assert made_first is not None
    token = made_first.token
    app = Litestar([automations_router(storage)], exception_handlers=EXCEPTION_HANDLERS)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        made = client.post("/api/v1/automations", headers=auth, json={
            "name": "a", "trigger": {"event": "X"}, "steps": [{"wait": "1m"}]})  # fmt: skip
        assert made.status_code == 201
        aid = made.json()["id"]
        assert made.json()["state"] == "draft"
        runs = client.get(f"/api/v1/automations/{aid}/runs", headers=auth,
                          params={"state": "waiting"})  # fmt: skip
        assert runs.json()["data"] == []
        bad = client.get(f"/api/v1/automations/{aid}/runs", headers=auth, params={"state": "x"})
        assert bad.json()["code"] == "invalid_state"
        live = client.post(f"/api/v1/automations/{aid}/state", headers=auth, json={"state": "on"})
        assert (live.status_code, live.json()["at"]) == (400, "/state")
        assert client.post("/api/v1/automations", headers=auth, json=[1]).status_code == 400
        assert client.post("/api/v1/deliveries/7/replay", headers=auth).status_code == 404
        assert client.get("/api/v1/automations").status_code == 401
        replaced = client.put(f"/api/v1/automations/{aid}", headers=auth, json={
            "name": "a", "trigger": {"event": "X"}, "steps": [{"wait": "2m"}]})  # fmt: skip
        assert replaced.json()["version"] == 2
        secret = client.get("/api/v1/webhooks/secret", headers=auth).json()["secret"]
        assert secret.startswith("whsec_")
        assert client.get("/api/v1/webhooks/secret", headers=auth).json()["secret"] == secret
    storage.close()
