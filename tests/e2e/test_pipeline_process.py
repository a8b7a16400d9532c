"""`cairn serve --workers N` runs the pipeline in a process of its own.

The HTTP workers run no runner: they wake the pipeline process through a pipe after each commit,
so events posted to any worker are processed at once. A pipeline process killed mid-stream is
replaced and takes the lease over at once; nothing is lost or applied twice. SIGTERM stops every
process and releases the lease; `--no-pipeline` means no pipeline anywhere (a `cairn worker`
beside it runs the same loop); `--workers 1` keeps the pipeline in the one process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.storage.base import open_storage
from tests.support.collector import basic, track
from tests.support.server import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


@pytest.fixture
def two_workers(tmp_path: Path, database_url: str | None) -> Iterator[ServerProcess]:
    server = ServerProcess(
        data_dir=tmp_path / "data", database_url=database_url, env={"CAIRN_WORKERS": "2"}
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _worker_pids(server: ServerProcess) -> set[int]:
    return {int(m.group(1)) for line in server.output
            if (m := re.search(r"Started server process \[(\d+)\]", line))}  # fmt: skip


def _pipeline_pids(server: ServerProcess) -> set[int]:
    assert server.proc is not None
    return _children(server.proc.pid) - _worker_pids(server)


def _status(server: ServerProcess) -> dict[str, Any]:
    with server.api() as api:
        answer = api.get("/api/v1/pipeline", headers={"Connection": "close"})
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _post(server: ServerProcess, name: str, count: int = 10) -> bool:
    batch = [track(messageId=f"{name}-{n}", userId=f"u-{n % 7}") for n in range(count)]
    try:
        answer = httpx.post(
            f"{server.url}/v1/batch",
            json={"batch": batch},
            headers={**basic(server.write_key), "Connection": "close"},  # a fresh worker each
            timeout=10,
        )
    except httpx.TransportError:
        return False
    return answer.status_code == 200


def _caught_up(server: ServerProcess) -> bool:
    status = _status(server)
    return bool(status["last_seq"] > 0 and status["cursor"] == status["last_seq"])


def _applied(server: ServerProcess) -> tuple[int, int, int]:
    """Events in the log; rows in person_events, and distinct events among them."""
    storage = open_storage(server.database_url or f"sqlite:///{server.data_dir / 'cairn.db'}")
    try:
        logged = storage._rows("SELECT count(*) FROM events")[0][0]  # type: ignore[attr-defined]
        rows = storage._rows("SELECT count(*), count(DISTINCT seq) FROM person_events")  # type: ignore[attr-defined]
    finally:
        storage.close()
    return int(logged), int(rows[0][0]), int(rows[0][1])


def test_the_pipeline_runs_in_its_own_process(two_workers: ServerProcess) -> None:
    server = two_workers
    assert len(_worker_pids(server)) == 2
    (pipeline_pid,) = _pipeline_pids(server)
    status = wait_for(lambda: (s := _status(server))["running_here"] and s, timeout=10)
    assert status["holder"].endswith(":pipeline")
    # Each worker answers for the server's pipeline process, not for itself.
    assert all(_status(server)["running_here"] for _ in range(6))

    for n in range(8):  # fresh connections: the kernel spreads them over both workers
        assert _post(server, f"w{n}")
        wait_for(lambda: _caught_up(server), timeout=5)
    logged, rows, distinct = _applied(server)
    assert logged == rows == distinct == 80
    assert _pipeline_pids(server) == {pipeline_pid}


def test_a_killed_pipeline_process_is_replaced_and_applies_each_event_once(
    two_workers: ServerProcess,
) -> None:
    server = two_workers
    (victim,) = _pipeline_pids(server)
    stop = threading.Event()
    sent: list[bool] = []

    def stream() -> None:
        while not stop.is_set():
            sent.append(_post(server, f"k{len(sent)}", count=50))

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        wait_for(lambda: _status(server)["cursor"] > 0, timeout=10)
        os.kill(victim, signal.SIGKILL)
        replacement = wait_for(lambda: _pipeline_pids(server) - {victim}, timeout=10)
        time.sleep(1.0)  # keep streaming into the new pipeline process
    finally:
        stop.set()
        thread.join(timeout=30)
    assert all(sent)
    # The replacement holds the lease under the server's name: it takes over at once, not
    # after the 10 s lease of the killed one lapses.
    wait_for(lambda: _caught_up(server), timeout=8)
    logged, rows, distinct = _applied(server)
    assert logged == rows == distinct == 50 * len(sent)
    assert _pipeline_pids(server) == replacement
    assert "the pipeline process exited with code -9; starting another" in "".join(server.output)


def test_sigterm_stops_every_process_and_releases_the_lease(two_workers: ServerProcess) -> None:
    server = two_workers
    assert server.proc is not None
    processes = _children(server.proc.pid)
    assert len(processes) == 3
    wait_for(lambda: _status(server)["running_here"], timeout=10)
    assert _post(server, "t")

    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    # The parent waits for every child before it exits.
    assert not [pid for pid in processes if Path(f"/proc/{pid}").exists()]
    storage = open_storage(server.database_url or f"sqlite:///{server.data_dir / 'cairn.db'}")
    try:
        rows = storage._rows("SELECT holder FROM cursors WHERE name = 'pipeline'")  # type: ignore[attr-defined]
    finally:
        storage.close()
    assert rows[0][0] is None, "the pipeline process released its lease as it stopped"


def test_no_pipeline_means_no_pipeline_process(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "data", env={"CAIRN_WORKERS": "2", "CAIRN_PIPELINE": "false"}
    ).start()
    try:
        assert server.proc is not None
        assert _children(server.proc.pid) == _worker_pids(server)
        assert "pipeline process" not in "".join(server.output)
        assert _post(server, "n")
        time.sleep(0.5)
        status = _status(server)
        assert status["last_seq"] == 10
        assert status["cursor"] == 0
        assert not status["running_here"]
    finally:
        server.stop()


def test_one_worker_runs_the_pipeline_in_its_own_process(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", env={"CAIRN_WORKERS": "1"}).start()
    try:
        assert server.proc is not None
        assert _children(server.proc.pid) == set()
        assert _post(server, "o")
        wait_for(lambda: _caught_up(server), timeout=5)
        status = _status(server)
        assert status["running_here"]
        assert status["processed"] == 10
    finally:
        server.stop()


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM])
def test_cairn_worker_beside_no_pipeline(tmp_path: Path, stop_with: signal.Signals) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "data", env={"CAIRN_WORKERS": "2", "CAIRN_PIPELINE": "false"}
    ).start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "cairn", "worker", "--data-dir", str(server.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert _post(server, "c")
        wait_for(lambda: _caught_up(server), timeout=10)
        status = _status(server)
        assert not status["running_here"]
        assert status["holder"].split(":")[1] == str(worker.pid)
        worker.send_signal(stop_with)
        output, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, output
        assert "following the log" in output
        assert _status(server)["holder"] is None, "it released the lease as it stopped"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        server.stop()
