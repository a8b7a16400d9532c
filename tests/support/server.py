"""A real `cairn serve` subprocess for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """`cairn serve` on a free port. `write_key` and `token` come from its first-start banner."""

    data_dir: Path
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    write_key: str = ""
    token: str = ""
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        args = [sys.executable, "-m", "cairn", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir)]  # fmt: skip
        if self.database_url:
            args += ["--database-url", self.database_url]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("cairn serve exited:\n" + "".join(self.output))
            self.output.append(line)
            if match := re.search(r"write key \([^)]*\):\s+(\S+)", line):
                self.write_key = self.write_key or match.group(1)
            if match := re.search(r"admin token \(shown once\):\s+(\S+)", line):
                self.token = match.group(1)
            if "Uvicorn running" in line:
                break
        else:
            self.stop()
            raise RuntimeError("cairn serve did not start:\n" + "".join(self.output))
        self._drain_output()
        httpx.get(self.url + "/health", timeout=5).raise_for_status()
        return self

    def _drain_output(self) -> None:
        import threading

        proc = self.proc

        def pump() -> None:
            assert proc is not None
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)

        threading.Thread(target=pump, daemon=True).start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """`kill -9`: no shutdown, no flush."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def events(self, **params: str | int) -> list[dict[str, object]]:
        """Every stored event matching `params`, newest first (follows cursors)."""
        found: list[dict[str, object]] = []
        cursor: str | None = None
        with self.api() as client:
            while True:
                query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = client.get("/api/v1/events", params=query)
                page.raise_for_status()
                body = page.json()
                found += body["data"]
                cursor = body["next_cursor"]
                if not cursor:
                    return found
