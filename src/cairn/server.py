"""`cairn serve`'s HTTP server: uvicorn in this process, or several worker processes on one port.

One Python process tops out at about one core of HTTP, decoding and normalizing (see
docs/benchmarks.md, "Ingest"). With `workers` > 1 the parent process serves nothing (`cairn serve`
has migrated and bootstrapped the database before): it reserves the port, forks the workers and
watches them. Each worker binds the port with `SO_REUSEPORT` (the kernel spreads new connections
over the workers) and runs the whole application on its own: its own log writer and group commit
(the processes' commits take turns, on SQLite through an flock and then its write lock, on
PostgreSQL through the append's advisory lock, so the log's sequence stays one monotonic order and
dedupe stays one unique index). The pipeline runs in one more process of its own (unless it is
off), so that its batches and the workers' requests do not take turns on one GIL; the workers
wake it through a pipe after each commit (`cairn.log.wakeup.PipelineLink`). A worker or the
pipeline process that dies is replaced; SIGINT or SIGTERM to the parent stops every process
gracefully (each worker commits what it accepted, the pipeline finishes its batch); all die with
the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from cairn.log.wakeup import PipelineLink
from cairn.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from litestar import Litestar

__all__ = ["default_workers", "refuse_taken_port", "run_server", "tune_runtime"]

log = logging.getLogger("cairn.server")

_MAX_AUTO_WORKERS = 4
_PR_SET_PDEATHSIG = 1
_STARTUP_FAILURE = 3
# A worker that dies this soon after it started is failing to start, not crashing under load:
# after a few of those in a row the parent gives up instead of forking forever.
_QUICK_DEATH_SECONDS = 5.0
_QUICK_DEATHS_ALLOWED = 3
_PIPELINE = -1  # the pipeline process's index among the children

MakeApp = Callable[[Settings, PipelineLink | None], "Litestar"]
RunPipeline = Callable[[Settings, PipelineLink, threading.Event], int]


def default_workers() -> int:
    """One worker per core this process may run on, at most four (`workers = 0`)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_AUTO_WORKERS))


def tune_runtime() -> None:
    """Ingest allocates thousands of short-lived dicts per request; collecting them in larger
    generations and freezing the startup heap keeps the collector from rescanning the app."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # The log writer thread needs the GIL only briefly between long GIL-free SQLite calls; with the
    # default 5 ms switch interval each of those hand-overs waits behind the busy event loop.
    sys.setswitchinterval(0.0005)


def _config(app: Litestar, settings: Settings) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def run_server(
    settings: Settings, workers: int, make_app: MakeApp, run_pipeline: RunPipeline | None = None
) -> int:
    """Serve until stopped; the exit code. `make_app` builds a worker's application (with its
    own runtime) in the process that serves it, given the link to the pipeline process when
    there is one; `run_pipeline` is that process's work (None: no pipeline process), run until
    the event it is given is set. One process (`workers` 1) runs the pipeline in a thread of the
    app, if its settings say so."""
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        import uvicorn

        app = make_app(settings, None)
        tune_runtime()
        server = uvicorn.Server(_config(app, settings))
        # uvicorn raises the SIGINT it handled again as it returns (uvicorn.run swallows it too).
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        return 0 if server.started else _STARTUP_FAILURE
    refuse_taken_port(settings.host, settings.port)
    reserved = _bind(settings.host, settings.port)
    # Port 0 asks for any free port: every worker must bind the one reserved here.
    settings = replace(settings, port=reserved.getsockname()[1])
    return _Supervisor(settings, workers, make_app, reserved, run_pipeline).run()


def refuse_taken_port(host: str, port: int) -> None:
    """SO_REUSEPORT would let these workers join another server's port (another `cairn serve`
    with workers, started twice by mistake) and split its connections: refuse a port that answers."""
    if port == 0:
        return
    wildcard = host in ("", "0.0.0.0", "::")  # noqa: S104 (a comparison, not a bind)
    target = host if not wildcard else "::1" if host == "::" else "127.0.0.1"
    try:
        with socket.create_connection((target, port), timeout=1):
            pass
    except OSError:
        return
    raise OSError(errno.EADDRINUSE, f"address already in use: {host}:{port}")


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT (not listening). Fails when a process that did not
    ask to share the port holds it."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class _Supervisor:
    def __init__(
        self,
        settings: Settings,
        workers: int,
        make_app: MakeApp,
        reserved: socket.socket,
        run_pipeline: RunPipeline | None,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.make_app = make_app
        self.reserved = reserved
        self.run_pipeline = run_pipeline
        self.link = PipelineLink() if run_pipeline is not None else None
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
        self.ready_read, self.ready_write = os.pipe()
        self.stopping = False
        self.quick_deaths = 0

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            if threading.active_count() > 1:
                log.warning("forking workers while %d threads run", threading.active_count())
            for index in range(self.workers):
                self._spawn(index)
            if self.link is not None:
                self._spawn(_PIPELINE)
            if self._wait_ready():
                host = self.settings.host
                shown = f"[{host}]" if ":" in host else host
                pipeline = " and a pipeline process" if self.link is not None else ""
                print(
                    f"INFO:     Uvicorn running on http://{shown}:{self.settings.port} in "
                    f"{self.workers} worker processes{pipeline} (Press CTRL+C to quit)",
                    flush=True,
                )
            while self.children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                index, started = self.children.pop(pid)
                exit_code = os.waitstatus_to_exitcode(status)
                if self.stopping:
                    if exit_code != 0:
                        code = exit_code if exit_code > 0 else 1
                    continue
                code = self._replace(index, started, exit_code) or code
        finally:
            self.stopping = True
            self._signal_children(signal.SIGTERM)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.reserved.close()
            os.close(self.ready_read)
            os.close(self.ready_write)
            if self.link is not None:
                self.link.close()
        return code

    def _wait_ready(self, timeout: float = 120.0) -> bool:
        """Until every worker listens (each writes a byte to the pipe once started); False when
        one exits first, the parent is told to stop, or it takes too long."""
        ready = 0
        deadline = time.monotonic() + timeout
        while ready < self.workers and not self.stopping and time.monotonic() < deadline:
            readable, _, _ = select.select([self.ready_read], [], [], 0.1)
            if readable:
                ready += len(os.read(self.ready_read, 64))
            # Peek without reaping: the wait loop deals with a worker that exited.
            if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return False
        return ready >= self.workers

    def _replace(self, index: int, started: float, exit_code: int) -> int:
        """Fork a new worker for one that died; give up when workers keep dying at start."""
        who = "the pipeline process" if index == _PIPELINE else f"cairn worker {index}"
        log.error("%s exited with code %d; starting another", who, exit_code)
        quick = time.monotonic() - started < _QUICK_DEATH_SECONDS
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        if self.quick_deaths > _QUICK_DEATHS_ALLOWED:
            log.error("cairn workers keep failing at start; stopping")
            self._stop(signal.SIGTERM, None)
            return exit_code if exit_code > 0 else _STARTUP_FAILURE
        self._spawn(index)
        return 0

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_children(signal.SIGTERM)

    def _signal_children(self, sig: signal.Signals) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(self._pipeline if index == _PIPELINE else self._serve)
        self.children[pid] = (index, time.monotonic())

    def _serve(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_quietly)
        os.close(self.ready_read)
        return _serve_worker(self.settings, self.make_app, self.ready_write, self.link)

    def _pipeline(self) -> int:
        """The pipeline process: `run_pipeline` until SIGINT or SIGTERM, which let it finish its
        batch and release the lease."""
        assert self.run_pipeline is not None
        assert self.link is not None
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.set())
        os.close(self.ready_read)
        os.close(self.ready_write)
        return self.run_pipeline(self.settings, self.link, stop)

    def _child(self, work: Callable[[], int]) -> NoReturn:
        code = 1
        try:
            _die_with_parent()
            self.reserved.close()
            code = work()
        except SystemExit as exc:  # uvicorn exits this way when the app fails to start
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # a worker must never return into the parent's loop
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    """A worker's SIGINT/SIGTERM outside uvicorn's own handlers: before it starts, and once more
    after its graceful shutdown (uvicorn raises the signal it caught again as it returns)."""
    raise SystemExit(0)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the parent dies (`kill -9` of `cairn serve` must not leave
    workers holding the port). What a worker answered 200 is committed already."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def _serve_worker(
    settings: Settings, make_app: MakeApp, ready: int, link: PipelineLink | None
) -> int:
    import uvicorn

    class Worker(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                os.write(ready, b".")

    sock = _bind(settings.host, settings.port)
    app = make_app(settings, link)
    tune_runtime()
    server = Worker(_config(app, settings))
    server.run(sockets=[sock])
    return 0 if server.started else _STARTUP_FAILURE
