"""The servers under test as subprocesses, and what /proc says about them while they run.

`cairn serve` and the no-op ceiling each run as their own process on a free loopback port, with
their output in a log file under `bench/.data/logs/`. They are stopped with SIGINT, as an operator
would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Server",
    "Usage",
    "free_port",
    "machine_busy_seconds",
    "start_cairn",
    "start_noop",
    "watch",
]

_BENCH = Path(__file__).parent
_LOGS = _BENCH / ".data" / "logs"
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path: str, token: str = "") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            try:
                self.get_json("/health")
                return
            except (OSError, urllib.error.URLError, json.JSONDecodeError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /health in {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGINT, then wait; kill only when it does not stop. The exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _spawn(name: str, args: list[str], port: int) -> Server:
    _LOGS.mkdir(parents=True, exist_ok=True)
    log = _LOGS / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(name, proc, port, log)
    server.wait_ready()
    return server


def start_noop() -> Server:
    port = free_port()
    args = [sys.executable, str(_BENCH / "noop_server.py"), "--port", str(port)]
    return _spawn("noop", args, port)


def start_cairn(
    name: str,
    *,
    data_dir: Path,
    database_url: str = "",
    pipeline: bool = True,
    workers: int | None = 1,
) -> Server:
    """`cairn serve`; `pipeline=False` measures the collector alone (`--no-pipeline`); `workers`
    is `--workers`: one process unless asked (the pipeline's status counters, `running_here` and
    `processed`, are those of the process that answers), None for Cairn's default (one per core)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "cairn",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if database_url:
        args += ["--database-url", database_url]
    if not pipeline:
        args.append("--no-pipeline")
    if workers is not None:
        args += ["--workers", str(workers)]
    return _spawn(name, args, port)


@dataclass
class Usage:
    """What the server and the machine used during the measured window."""

    rss_mb: list[float] = field(default_factory=list)
    server_cores: float = 0.0
    generator_cores: float = 0.0
    other_cores: float = 0.0

    @property
    def rss_peak_mb(self) -> float:
        return max(self.rss_mb, default=0.0)


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (`cairn serve --workers N` is a parent and N workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo += [int(child) for child in children]
    return found


def _rss_mb(pid: int) -> float:
    """The sum of `VmRSS` over the process tree (pages shared by forked workers count once per
    process: an upper bound on what the server holds)."""
    total = 0
    for member in _tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(ln.split()[1]) for ln in lines if ln.startswith("VmRSS:")), 0)
    return total / 1024


def _process_ticks(pid: int | str) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def _tree_ticks(pid: int) -> int:
    return sum(_process_ticks(member) for member in _tree(pid))


def _machine_busy_ticks() -> int:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


def machine_busy_seconds() -> float:
    """CPU seconds the machine has spent busy since boot, all cores together."""
    return _machine_busy_ticks() / _TICK


def _ticks(pid: int) -> tuple[int, int, int]:
    return _tree_ticks(pid), _process_ticks("self"), _machine_busy_ticks()


async def watch(pid: int, delay: float, duration: float, usage: Usage) -> None:
    """Fill `usage` from /proc during [delay, delay + duration] seconds from now."""
    await asyncio.sleep(delay)
    started, begin = time.monotonic(), _ticks(pid)
    while (left := duration - (time.monotonic() - started)) > 0:
        usage.rss_mb.append(_rss_mb(pid))
        await asyncio.sleep(min(0.5, left))
    end, elapsed = _ticks(pid), time.monotonic() - started
    server, generator, busy = ((b - a) / _TICK / elapsed for a, b in zip(begin, end, strict=True))
    usage.server_cores = server
    usage.generator_cores = generator
    usage.other_cores = max(0.0, busy - server - generator)
