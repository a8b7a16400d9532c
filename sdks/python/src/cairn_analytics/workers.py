"""The SDK's threads, and the state they share with the client's hot path.

Memory mode: one `MemorySender` drains the queue, encodes, batches and sends. Spool mode: a
`SpoolWriter` drains the queue into the spool within milliseconds (so the queue stays short and a
crash loses little), and a `SpoolSender` sends the spool's segments and deletes what was taken.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cairn_analytics.delivery import MAX_BATCH_BYTES, Delivery, Outcome
from cairn_analytics.errors import CairnAnalyticsError, EventsDropped
from cairn_analytics.messages import Call, Encoder, decode_lines
from cairn_analytics.spool import Spool

__all__ = ["Marker", "MemorySender", "Outbox", "SpoolSender", "SpoolWriter", "Stats"]

log = logging.getLogger("cairn_analytics")

OnError = Callable[[Exception, list[dict[str, Any]]], None]
_BODY_OVERHEAD = 64
_DRAIN_CHUNK = 4096
_ADOPT_EVERY = 60.0


@dataclass(frozen=True)
class Stats:
    """A snapshot of a client's counters (events, since the client started)."""

    queued: int  # waiting in memory
    spooled_bytes: int  # on disk, not yet delivered
    delivered: int  # taken by the server
    dropped: int  # refused because the queue or the spool was full, or lost at shutdown
    refused: int  # invalid, not serializable or too large: reported, never sent
    failed: int  # given up after the server's answer or after the retries ran out


@dataclass(eq=False)
class Marker:
    """Put in the queue by `flush()`: done once everything queued before it is settled
    (memory mode) or written to the spool (spool mode)."""

    done: threading.Event = field(default_factory=threading.Event)


class Outbox:
    """What the caller's thread and the SDK's threads share: the queue, its wake-up signal, the
    encoder and the counters, and the one place errors are reported."""

    def __init__(self, on_error: OnError | None, recorder: list[Any] | None = None) -> None:
        self.queue: deque[Call | Marker] = deque()
        self.wake = threading.Event()
        self.closing = threading.Event()
        self.cancel = threading.Event()  # cuts retry waits short at the end of a shutdown
        self.encoder = Encoder()
        self.on_error = on_error
        self.recorder = recorder  # the testing helper's list of built messages
        self.lock = threading.Lock()
        self.delivered = self.dropped = self.refused = self.failed = 0
        self._unreported_drops: dict[str, int] = {}
        self._last_drop_report = 0.0

    def line(self, call: Call) -> bytes | None:
        """The call as a JSON line, or None after reporting why it cannot be sent."""
        message: dict[str, Any] = {}
        try:
            message = self.encoder.message(call)
            data = self.encoder.line(message)
        except CairnAnalyticsError as error:
            with self.lock:
                self.refused += 1
            self.report(error, [message] if message else [])
            return None
        if self.recorder is not None:
            self.recorder.append(message)
        return data

    def drop(self, count: int, where: str) -> None:
        with self.lock:
            self.dropped += count
            self._unreported_drops[where] = self._unreported_drops.get(where, 0) + count

    def report_drops(self, force: bool = False) -> None:
        """Report drops at most once a second: a full queue must not become a flood of calls."""
        if not self._unreported_drops or (
            not force and time.monotonic() - self._last_drop_report < 1.0
        ):
            return
        with self.lock:
            drops, self._unreported_drops = self._unreported_drops, {}
        self._last_drop_report = time.monotonic()
        for where, count in drops.items():
            self.report(EventsDropped(count, where), [])

    def settle(self, outcome: Outcome, lines: list[bytes]) -> None:
        """Count and report what became of a batch that was delivered or given up."""
        with self.lock:
            if outcome.delivered:
                self.delivered += len(lines) - len(outcome.rejected)
                self.failed += len(outcome.rejected)
            else:
                self.failed += len(lines)
        if outcome.error is not None:
            chosen = [lines[i] for i in outcome.rejected if 0 <= i < len(lines)]
            self.report(outcome.error, decode_lines(chosen if outcome.delivered else lines))

    def report(self, error: Exception, messages: list[dict[str, Any]]) -> None:
        log.error("cairn-analytics: %s", error)
        if self.on_error is None:
            return
        try:
            self.on_error(error, messages)
        except Exception:
            log.exception("cairn-analytics: on_error raised")

    def drain(self, limit: int) -> list[Call | Marker]:
        queue = self.queue
        items: list[Call | Marker] = []
        while queue and len(items) < limit:
            items.append(queue.popleft())
        return items


class MemorySender(threading.Thread):
    """Batches by count, bytes and interval, and sends; the queue grows while it retries."""

    def __init__(
        self, outbox: Outbox, delivery: Delivery, upload_size: int, upload_interval: float
    ) -> None:
        super().__init__(name="cairn-analytics-sender", daemon=True)
        self._outbox = outbox
        self._delivery = delivery
        self._upload_size = upload_size
        self._interval = upload_interval
        self._lines: list[bytes] = []
        self._bytes = _BODY_OVERHEAD
        self._opened = 0.0

    def run(self) -> None:
        outbox = self._outbox
        while True:
            for item in outbox.drain(self._upload_size - len(self._lines)):
                if isinstance(item, Marker):
                    self._send()
                    item.done.set()
                elif (line := outbox.line(item)) is not None:
                    self._add(line)
            outbox.report_drops()
            closing = outbox.closing.is_set()
            if self._lines and (self._full() or self._due() or closing):
                self._send()
            if outbox.queue:
                continue
            if closing and not self._lines:
                return
            wait = self._interval - (time.monotonic() - self._opened) if self._lines else 1.0
            if not closing and wait > 0:
                outbox.wake.wait(wait)
                outbox.wake.clear()

    def _add(self, line: bytes) -> None:
        if self._bytes + len(line) + 1 > MAX_BATCH_BYTES:
            self._send()
        if not self._lines:
            self._opened = time.monotonic()
        self._lines.append(line)
        self._bytes += len(line) + 1

    def _full(self) -> bool:
        return len(self._lines) >= self._upload_size or self._bytes > MAX_BATCH_BYTES - 32_768

    def _due(self) -> bool:
        return time.monotonic() - self._opened >= self._interval

    def _send(self) -> None:
        lines, self._lines, self._bytes = self._lines, [], _BODY_OVERHEAD
        if not lines:
            return
        outcome = self._delivery.send(lines)
        if outcome.settled:
            self._outbox.settle(outcome, lines)
        else:
            self._outbox.drop(len(lines), "queue at shutdown")


class SpoolWriter(threading.Thread):
    """Moves queued calls to the spool as JSON lines, one `write()` per drained chunk."""

    def __init__(self, outbox: Outbox, spool: Spool, notify: threading.Event) -> None:
        super().__init__(name="cairn-analytics-spool-writer", daemon=True)
        self._outbox = outbox
        self._spool = spool
        self._notify = notify

    def run(self) -> None:
        outbox = self._outbox
        while True:
            lines: list[bytes] = []
            for item in outbox.drain(_DRAIN_CHUNK):
                if isinstance(item, Marker):
                    self._write(lines)
                    lines = []
                    item.done.set()
                elif (line := outbox.line(item)) is not None:
                    lines.append(line)
            self._write(lines)
            outbox.report_drops()
            if outbox.queue:
                continue
            if outbox.closing.is_set():
                return
            outbox.wake.wait(1.0)
            outbox.wake.clear()

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        try:
            written = self._spool.append(lines)
        except OSError as error:
            log.error("cairn-analytics: cannot write to the spool: %s", error)
            written = 0
        if written < len(lines):
            self._outbox.drop(len(lines) - written, "spool")
        self._notify.set()


class SpoolSender(threading.Thread):
    """Sends the spool oldest first and deletes what the server took. Never gives up on a batch
    for a reason that is not the batch's own (see `Delivery`)."""

    def __init__(
        self,
        outbox: Outbox,
        spool: Spool,
        delivery: Delivery,
        notify: threading.Event,
        upload_size: int,
        upload_interval: float,
    ) -> None:
        super().__init__(name="cairn-analytics-spool-sender", daemon=True)
        self._outbox = outbox
        self._spool = spool
        self._delivery = delivery
        self._notify = notify
        self.hurry = threading.Event()  # set by flush and shutdown: send partial batches now
        self.writer_done = threading.Event()
        self._upload_size = upload_size
        self._interval = upload_interval
        self._partial_since: float | None = None
        self._adopted_at = time.monotonic()  # the client adopted leftovers as it started

    def run(self) -> None:
        while self._step():
            pass

    def _step(self) -> bool:
        """One batch, or one wait; False when the thread should end."""
        if time.monotonic() - self._adopted_at > _ADOPT_EVERY:
            self._adopt()
        batch = self._spool.next_batch(self._upload_size, MAX_BATCH_BYTES)
        if batch is None:
            if self.writer_done.is_set():
                return False
            self._wait(1.0)
            return True
        if len(batch.lines) < self._upload_size and not self.hurry.is_set():
            now = time.monotonic()
            self._partial_since = self._partial_since or now
            if now - self._partial_since < self._interval:
                # Not woken by each write: a partial batch waits out the interval to grow.
                self.hurry.wait(self._interval - (now - self._partial_since))
                return True
        self._partial_since = None
        outcome = self._delivery.send(batch.lines, persistent=True)
        if not outcome.settled:
            return False  # cancelled by shutdown: the batch stays in the spool
        self._spool.ack(batch)
        self._outbox.settle(outcome, batch.lines)
        return True

    def _adopt(self) -> None:
        self._adopted_at = time.monotonic()
        try:
            found = self._spool.adopt()
        except OSError as error:
            log.warning("cairn-analytics: cannot look for leftover spools: %s", error)
            return
        if found:
            log.info("cairn-analytics: sending %d segment(s) left by an earlier process", found)

    def _wait(self, seconds: float) -> None:
        if self._notify.wait(seconds):
            self._notify.clear()
