"""The `cairn` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess


def cairn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_sources_create_and_list_json(tmp_path: Path) -> None:
    created = cairn("sources", "create", "web", "--data-dir", str(tmp_path), "--json")
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    assert set(record) == {"id", "name", "write_key"}
    assert record["name"] == "web"
    listed = cairn("sources", "list", "--data-dir", str(tmp_path), "--json")
    assert [s["write_key"] for s in json.loads(listed.stdout)] == [record["write_key"]]


def test_duplicate_source_name_fails_clearly(tmp_path: Path) -> None:
    assert cairn("sources", "create", "web", "--data-dir", str(tmp_path)).returncode == 0
    again = cairn("sources", "create", "web", "--data-dir", str(tmp_path))
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_unknown_workspace_fails_clearly(tmp_path: Path) -> None:
    result = cairn("sources", "list", "--workspace", "nope", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no workspace named 'nope'" in result.stderr


def test_env_var_selects_the_data_dir(tmp_path: Path) -> None:
    env = {"CAIRN_DATA_DIR": str(tmp_path / "env-dir")}
    assert cairn("sources", "create", "app", "--json", env=env).returncode == 0
    assert (tmp_path / "env-dir" / "cairn.db").exists()


def test_token_from_cli_works_against_a_running_server(server: ServerProcess) -> None:
    made = cairn("tokens", "create", "--data-dir", str(server.data_dir), "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    answer = httpx.get(server.url + "/api/v1/sources", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert len(answer.json()["data"]) == 1


def test_source_created_while_serving_accepts_events(server: ServerProcess) -> None:
    made = cairn("sources", "create", "backend", "--data-dir", str(server.data_dir), "--json")
    key = json.loads(made.stdout)["write_key"]
    sent = httpx.post(server.url + "/v1/track", json={"userId": "u", "event": "A Happened"},
                      auth=(key, ""))  # fmt: skip
    assert sent.status_code == 200
    assert server.events()[0]["sourceId"] == json.loads(made.stdout)["id"]


def test_tail_prints_events_as_json(server: ServerProcess) -> None:
    for n in range(3):
        httpx.post(server.url + "/v1/track", auth=(server.write_key, ""),
                   json={"userId": f"u{n}", "event": "Thing Happened"})  # fmt: skip
    tail = cairn("tail", "--data-dir", str(server.data_dir), "--json", "--from-start",
                 "--count", "3")  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [m["userId"] for m in lines] == ["u0", "u1", "u2"]


def test_serve_prints_write_key_token_and_urls_once(tmp_path: Path) -> None:
    first = ServerProcess(data_dir=tmp_path).start()
    try:
        banner = "".join(first.output)
        assert first.write_key in banner
        assert first.token in banner
        assert "/docs" in banner
        assert "/v1/batch" in banner
    finally:
        first.stop()
    second = ServerProcess(data_dir=tmp_path).start()
    try:
        assert second.token == ""
        assert second.write_key == first.write_key
    finally:
        second.stop()


@pytest.mark.parametrize("command", [["sources", "list"], ["tokens", "create"]])
def test_commands_accept_database_url(command: list[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/other.db"
    result = cairn(*command, "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "other.db").exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_source_names_are_refused(name: str, tmp_path: Path) -> None:
    result = cairn("sources", "create", name, "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "1 to 200 characters" in result.stderr


def test_unicode_source_name_round_trips(tmp_path: Path) -> None:
    name = "Boutique é 🛒 عربى"
    made = cairn("sources", "create", name, "--data-dir", str(tmp_path), "--json")
    assert json.loads(made.stdout)["name"] == name
    listed = cairn("sources", "list", "--data-dir", str(tmp_path), "--json")
    assert json.loads(listed.stdout)[0]["name"] == name


@pytest.mark.parametrize("workers", ["2", "1"])
def test_serve_refuses_a_port_another_server_answers_on(workers: str, tmp_path: Path) -> None:
    """With SO_REUSEPORT, workers could silently join another server's port and split its
    connections: `cairn serve` must refuse a port that answers, and say why."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = cairn("serve", "--workers", workers, "--host", "127.0.0.1", "--port", port,
                     "--data-dir", str(tmp_path))  # fmt: skip
    assert done.returncode != 0
    assert "address already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("workers", ["-1", "two", "1.5"])
def test_serve_refuses_a_bad_worker_count(workers: str, tmp_path: Path) -> None:
    done = cairn("serve", "--workers", workers, "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--workers" in done.stderr
    assert "Traceback" not in done.stderr
