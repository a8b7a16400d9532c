"""The `Client`: the six calls of the Segment spec, cheap enough to call in a hot loop.

A call checks its ids, then appends one tuple to a bounded deque and returns. Building the
message, its messageId and its JSON, batching and sending all happen in the SDK's threads.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from cairn_analytics.delivery import Delivery
from cairn_analytics.errors import InvalidMessage
from cairn_analytics.messages import Call
from cairn_analytics.spool import Spool
from cairn_analytics.transport import HTTPTransport, Transport
from cairn_analytics.workers import (
    Marker,
    MemorySender,
    OnError,
    Outbox,
    SpoolSender,
    SpoolWriter,
    Stats,
)

__all__ = ["DEFAULT_HOST", "Client", "OnError", "Stats"]

DEFAULT_HOST = "http://127.0.0.1:8000"
log = logging.getLogger("cairn_analytics")
_now = time.time
_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """Sends events to Cairn. Arguments are those of Segment's analytics-python where they exist.

    Overflow policy: when `max_queue_size` events wait in memory, a new call is refused (it
    returns False), counted in `stats().dropped` and reported through `on_error` as
    `EventsDropped`, at most once a second. The events already queued are kept.
    """

    _closed: bool
    _outbox: Outbox
    _threaded: bool

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        debug: bool = False,
        max_queue_size: int = 100_000,
        send: bool = True,
        on_error: OnError | None = None,
        gzip: bool = True,
        max_retries: int = 10,
        sync_mode: bool = False,
        timeout: float = 15.0,
        upload_size: int = 500,
        upload_interval: float = 0.5,
        log_handler: logging.Handler | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        spool_fsync: bool = False,
        max_backoff: float = 60.0,
        shutdown_timeout: float = 5.0,
        transport: Transport | None = None,
    ) -> None:
        if send and not write_key:
            raise ValueError("write_key is required (or pass send=False)")
        if not 1 <= upload_size <= 2500:
            raise ValueError("upload_size must be between 1 and 2500 (the server's batch limit)")
        if sync_mode and spool_dir is not None:
            raise ValueError("sync_mode sends each call before returning: it has no spool")
        if log_handler is not None:
            log.addHandler(log_handler)
        if debug:
            log.setLevel(logging.DEBUG)
        self.write_key = write_key or ""
        self.host = host or DEFAULT_HOST
        self.send = send
        self.sync_mode = sync_mode
        self.on_error = on_error
        self.max_queue_size = max_queue_size
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.gzip = gzip
        self.max_retries = max_retries
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.upload_size = upload_size
        self.upload_interval = upload_interval
        self.spool_max_bytes = spool_max_bytes
        self.spool_fsync = spool_fsync
        self.shutdown_timeout = shutdown_timeout
        self._custom_transport = transport
        self._start()
        _CLIENTS.add(self)
        atexit.register(_shutdown_at_exit, weakref.ref(self))

    # -- the six calls -------------------------------------------------------------------------

    def track(
        self,
        user_id: str | int | None = None,
        event: str | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Record that a user did something. Returns False when the call was refused."""
        if not (user_id or anonymous_id) or event.__class__ is not str:
            return self._refuse("track needs user_id or anonymous_id, and an event name")
        return self._put(("track", user_id, anonymous_id, event, properties, None, context,
                          timestamp or _now(), integrations, message_id))  # fmt: skip

    def identify(
        self,
        user_id: str | int | None = None,
        traits: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Say who a user is and what their traits are."""
        if not (user_id or anonymous_id):
            return self._refuse("identify needs user_id or anonymous_id")
        return self._put(("identify", user_id, anonymous_id, traits, None, None, context,
                          timestamp or _now(), integrations, message_id))  # fmt: skip

    def group(
        self,
        user_id: str | int | None = None,
        group_id: str | int | None = None,
        traits: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Say which account (group) a user belongs to."""
        if not (user_id or anonymous_id) or group_id is None or group_id == "":
            return self._refuse("group needs user_id or anonymous_id, and group_id")
        return self._put(("group", user_id, anonymous_id, group_id, traits, None, context,
                          timestamp or _now(), integrations, message_id))  # fmt: skip

    def alias(
        self,
        previous_id: str | int | None = None,
        user_id: str | int | None = None,
        context: dict[str, Any] | None = None,
        timestamp: Any = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Say that `previous_id` (an anonymous id or an older user id) is `user_id`."""
        if not previous_id or not user_id:
            return self._refuse("alias needs previous_id and user_id")
        return self._put(("alias", user_id, None, previous_id, None, None, context,
                          timestamp or _now(), integrations, message_id))  # fmt: skip

    def page(
        self,
        user_id: str | int | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Record a page view."""
        if not (user_id or anonymous_id):
            return self._refuse("page needs user_id or anonymous_id")
        return self._put(("page", user_id, anonymous_id, name, properties, category, context,
                          timestamp or _now(), integrations, message_id))  # fmt: skip

    def screen(
        self,
        user_id: str | int | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: Any = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Record an app screen view."""
        if not (user_id or anonymous_id):
            return self._refuse("screen needs user_id or anonymous_id")
        return self._put(("screen", user_id, anonymous_id, name, properties, category, context,
                          timestamp or _now(), integrations, message_id))  # fmt: skip

    # -- control -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is delivered (or given up); with a spool, until
        the spool is empty. Returns False if `timeout` (seconds) ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._threaded:
            return True
        if not self._wait_marker(deadline):
            return False
        self._outbox.report_drops(force=True)
        if self._spool_sender is None or self._spool is None:
            return True
        self._spool_sender.hurry.set()
        try:
            while self._spool.size > 0 and self._spool_sender.is_alive():
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
            return True
        finally:
            if not self._outbox.closing.is_set():
                self._spool_sender.hurry.clear()

    def sync_spool(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is written to the spool (fsynced with
        `spool_fsync=True`): from then on a crash of this process cannot lose them. Without a
        spool this is `flush`."""
        if self._spool is None:
            return self.flush(timeout)
        return self._wait_marker(None if timeout is None else time.monotonic() + timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Send what is queued (waiting at most `timeout`, default `shutdown_timeout`) and stop.
        With a spool, what is not delivered by then stays on disk for the next start; without
        one it is counted as dropped. Calls made afterwards are refused."""
        if self._closed:
            return
        self._closed = True
        budget = self.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        self._outbox.closing.set()
        self._outbox.wake.set()
        if self._spool_sender is not None:
            self._spool_sender.hurry.set()
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
            if thread is self._threads[0] and self._spool_sender is not None:
                self._spool_sender.writer_done.set()
        self._outbox.cancel.set()
        for thread in self._threads:
            thread.join(1.0)
        self._finish_shutdown()

    def join(self) -> None:
        """analytics-python's name for stopping the threads; here the same as `shutdown`."""
        self.shutdown()

    def stats(self) -> Stats:
        outbox = self._outbox
        with outbox.lock:
            return Stats(
                queued=len(outbox.queue),
                spooled_bytes=self._spool.size if self._spool is not None else 0,
                delivered=outbox.delivered,
                dropped=outbox.dropped,
                refused=outbox.refused,
                failed=outbox.failed,
            )

    @property
    def dropped(self) -> int:
        """Events refused because the queue or spool was full, or lost at shutdown."""
        return self._outbox.dropped

    # -- internals -----------------------------------------------------------------------------

    def _start(self, threads: bool = True) -> None:
        """Build the queue, the delivery and the threads (again in a forked child)."""
        self._closed = not threads
        self._outbox = outbox = Outbox(self.on_error)
        self._queue = outbox.queue
        self._wake = outbox.wake
        self._threads: list[threading.Thread] = []
        self._spool: Spool | None = None
        self._spool_sender: SpoolSender | None = None
        self._sync_lock = threading.Lock()
        self._delivery = self._make_delivery()
        self._threaded = self.send and not self.sync_mode
        # The caller wakes the sender only when a batch is full; the spool writer at once.
        self._wake_at = 1 if self.spool_dir is not None else self.upload_size
        if self._threaded and threads:
            self._start_threads()

    def _make_delivery(self) -> Delivery:
        transport = self._custom_transport or HTTPTransport(self.host, timeout=self.timeout)
        return Delivery(
            transport,
            self.write_key,
            gzip=self.gzip,
            max_retries=self.max_retries,
            max_backoff=self.max_backoff,
            cancel=self._outbox.cancel,
        )

    def _start_threads(self) -> None:
        size, interval = self.upload_size, self.upload_interval
        if self.spool_dir is not None:
            self._spool = self._open_spool(self.spool_dir)
        if self._spool is None:
            self._threads = [MemorySender(self._outbox, self._delivery, size, interval)]
        else:
            notify = threading.Event()
            self._spool_sender = SpoolSender(
                self._outbox, self._spool, self._delivery, notify, size, interval
            )
            self._threads = [SpoolWriter(self._outbox, self._spool, notify), self._spool_sender]
        for thread in self._threads:
            thread.start()

    def _open_spool(self, directory: Path) -> Spool | None:
        try:
            spool = Spool(directory, max_bytes=self.spool_max_bytes, fsync=self.spool_fsync)
            spool.adopt()  # now, so that a flush() right after start waits for the leftovers too
            return spool
        except OSError as error:
            self._outbox.report(
                InvalidMessage(f"cannot use spool_dir {directory}: {error}; events stay in memory"),
                [],
            )
            self._wake_at = self.upload_size
            return None

    def _put(self, call: Call) -> bool:
        queue = self._queue
        if len(queue) >= self.max_queue_size or not self._threaded or self._closed:
            return self._put_slowly(call)
        queue.append(call)
        if len(queue) == self._wake_at:
            self._wake.set()
        return True

    def _put_slowly(self, call: Call) -> bool:
        if self._closed:
            self._outbox.drop(1, "client (shut down)")
            return False
        if self._threaded:
            self._outbox.drop(1, "queue")
            return False
        line = self._outbox.line(call)
        if line is None:
            return False
        if not self.send:
            return True
        with self._sync_lock:
            outcome = self._delivery.send([line])
        self._outbox.settle(outcome, [line])
        return outcome.delivered and not outcome.rejected

    def _refuse(self, reason: str) -> bool:
        with self._outbox.lock:
            self._outbox.refused += 1
        self._outbox.report(InvalidMessage(reason), [])
        return False

    def _wait_marker(self, deadline: float | None) -> bool:
        if not self._threaded or self._closed:
            return True
        marker = Marker()
        self._queue.append(marker)
        self._wake.set()
        while not marker.done.wait(0.05):
            if not any(t.is_alive() for t in self._threads):
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def _finish_shutdown(self) -> None:
        left = sum(1 for item in self._queue if not isinstance(item, Marker))
        if left:
            self._outbox.drop(left, "queue at shutdown")
        self._outbox.report_drops(force=True)
        if self._spool is not None and not any(t.is_alive() for t in self._threads):
            self._spool.close()
        self._delivery.close()

    def _after_fork(self) -> None:
        """In a forked child: the parent's threads are gone and its queue is the parent's to
        send. Start over with an empty queue, new locks, new threads and a spool of our own.
        The parent's connection is dropped, not closed: its socket is the parent's too."""
        if self._spool is not None:
            self._spool.abandon()
        self._start(threads=not self._closed)


def _shutdown_at_exit(ref: weakref.ref[Client]) -> None:
    client = ref()
    if client is not None and not client._closed:
        client.shutdown()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
