"""PipelineLink: a byte from any process wakes the listener; writers never block or fail."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cairn.log.wakeup import PipelineLink


@pytest.fixture
def link() -> Iterator[PipelineLink]:
    made = PipelineLink()
    yield made
    made.close()


def test_a_wake_from_another_process_reaches_the_listener(link: PipelineLink) -> None:
    pid = os.fork()  # before the listener's thread starts: fork no threads
    if pid == 0:  # a worker: wake the listener once it listens, and leave
        time.sleep(0.2)
        link.wake()
        os._exit(0)
    woken = threading.Event()
    link.listen(woken.set)
    assert woken.wait(5)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_many_wakes_are_read_together(link: PipelineLink) -> None:
    for _ in range(100):
        link.wake()
    calls: list[int] = []
    done = threading.Event()

    def wake() -> None:
        calls.append(1)
        done.set()

    link.listen(wake)
    assert done.wait(5)
    assert len(calls) == 1  # 100 bytes, one read


def test_a_full_pipe_does_not_block_the_writer(link: PipelineLink) -> None:
    for _ in range(200_000):  # more than any pipe buffer holds; nobody reads
        link.wake()


def test_the_holder_names_the_server_not_the_process(link: PipelineLink) -> None:
    assert link.holder == f"{socket.gethostname()}:{os.getpid()}:pipeline"


def test_closing_the_link_ends_its_listener_quietly() -> None:
    """Closed while the listener is waking the pipeline: it stops instead of reading a closed
    (or reused) descriptor."""
    link = PipelineLink()
    errors: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        woken = threading.Event()

        def wake() -> None:
            woken.set()
            time.sleep(0.2)  # the link is closed meanwhile

        thread = link.listen(wake)
        link.wake()
        assert woken.wait(5)
        link.close()
        thread.join(5)
        assert not thread.is_alive()
        assert errors == []
    finally:
        threading.excepthook = hook
