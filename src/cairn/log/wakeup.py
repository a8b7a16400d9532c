"""Waking the log's consumer, the pipeline, when the log grows or it has new work: its `Runner`
in this process, or across processes through a `PipelineLink` (`cairn serve --workers N` runs the
pipeline in a process of its own; the HTTP workers commit the events and wake it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["PipelineLink", "PipelineRunner"]


class PipelineRunner(Protocol):
    """What a server process asks of the pipeline that runs for it, here or in another process."""

    def wake(self) -> None:
        """There is new work: do not wait for the next poll."""

    @property
    def holding(self) -> bool:
        """Whether it runs: it holds the pipeline's lease."""


class PipelineLink:
    """From the HTTP workers of one `cairn serve` to its pipeline process: a pipe, where a byte
    means "look at the log", and the name the pipeline process holds the lease under.

    The supervisor makes it before forking and keeps both ends, so that a replaced worker or
    pipeline process finds it. Writes never block: when the pipeline process is slow to read (or
    dead, and being replaced), the bytes already in the pipe wake it all the same. The holder
    name is the server's, not the process's: a pipeline process that replaces one that died
    takes the lease over at once instead of waiting for it to lapse (there is never more than
    one, the supervisor forks the next after the last has exited).
    """

    def __init__(self) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}:pipeline"
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self._closed = False

    def wake(self) -> None:
        # A full pipe will wake it anyway; a closed one has nobody to wake.
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.write_fd, b"\0")

    def listen(self, wake: Callable[[], None]) -> threading.Thread:
        """Call `wake` on a daemon thread whenever bytes arrive (many at once wake it once)."""

        def read() -> None:
            # Until the link is closed: a read of a closed descriptor fails (EBADF), and its
            # number may already name another file, which is then not read from.
            try:
                while not self._closed and os.read(self.read_fd, 4096):
                    wake()
            except OSError:
                if not self._closed:
                    raise

        thread = threading.Thread(target=read, name="cairn-pipeline-wakeup", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._closed = True
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                continue
