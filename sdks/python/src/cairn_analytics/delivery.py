"""Sending one batch: the request body, gzip, and the retry policy.

Retried: no answer at all, 5xx (but 501 and 505), 408 and 429, with exponential backoff and jitter,
and never sooner than a `Retry-After` asks. Given up: any other 4xx, and retries run out. A spooled
batch (`persistent=True`) is never given up for reasons that are not its own: network errors,
5xx, 429 and the configuration answers 401/403/404 are retried until they stop, because the events
are safe on disk and dropping them would lose them for an operator's typo.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field

from cairn_analytics.errors import CairnAnalyticsError, DeliveryFailed, MessagesRejected
from cairn_analytics.messages import iso_timestamp
from cairn_analytics.transport import Response, Transport, TransportError
from cairn_analytics.version import VERSION

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_MESSAGES", "Delivery", "Outcome", "batch_body"]

# The server takes 500 KB (512,000 bytes) per request after inflating and 2,500 messages per batch.
MAX_BATCH_BYTES = 500_000
MAX_BATCH_MESSAGES = 2_500
_MAX_RETRY_AFTER = 300.0
_MAX_RATE_LIMITED_SECONDS = 1800.0  # uncounted 429 waits stop being free after this long
_RETRIED_4XX = frozenset({408, 429})
_CONFIGURATION_4XX = frozenset({401, 403, 404})
_NOT_RETRIED_5XX = frozenset({501, 505})

log = logging.getLogger("cairn_analytics")


@dataclass
class Outcome:
    """What became of a batch: `delivered` (the server took it), `gave_up` (it never will), or
    neither (`interrupted`: shutdown came first and the batch is still owed)."""

    delivered: bool = False
    gave_up: bool = False
    error: CairnAnalyticsError | None = None
    rejected: list[int] = field(default_factory=list)  # indexes the server refused

    @property
    def settled(self) -> bool:
        return self.delivered or self.gave_up


def batch_body(lines: list[bytes], sent_at: str) -> bytes:
    return b'{"batch":[%s],"sentAt":"%s"}' % (b",".join(lines), sent_at.encode())


class Delivery:
    """Posts batches for one client. `cancel` cuts every wait short (shutdown)."""

    def __init__(
        self,
        transport: Transport,
        write_key: str,
        *,
        gzip: bool,
        max_retries: int,
        max_backoff: float,
        cancel: threading.Event,
    ) -> None:
        self._transport = transport
        self._gzip = gzip
        self._max_retries = max_retries
        self._max_backoff = max_backoff
        self._cancel = cancel
        token = base64.b64encode(f"{write_key}:".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "User-Agent": f"cairn-analytics-python/{VERSION}",
        }
        if gzip:
            self._headers["Content-Encoding"] = "gzip"

    def send(self, lines: list[bytes], *, persistent: bool = False) -> Outcome:
        answer = self._post_with_retries(lines, persistent)
        if answer is None:
            return Outcome()
        if answer.status == 413 and len(lines) > 1:  # the server's limit is lower than ours
            return self._send_halves(lines, persistent)
        return _outcome(answer)

    def close(self) -> None:
        self._transport.close()

    def _send_halves(self, lines: list[bytes], persistent: bool) -> Outcome:
        middle = len(lines) // 2
        first = self.send(lines[:middle], persistent=persistent)
        if not first.settled:
            return first
        second = self.send(lines[middle:], persistent=persistent)
        if not second.settled:
            return Outcome()  # the first half will go again: the server drops it as a duplicate
        return Outcome(
            delivered=first.delivered or second.delivered,
            gave_up=first.gave_up and second.gave_up,
            error=first.error or second.error,
            rejected=first.rejected + [middle + i for i in second.rejected],
        )

    def _post_with_retries(self, lines: list[bytes], persistent: bool) -> Response | None:
        """The final answer (or a synthetic one for giving up on network errors); None when
        cancelled."""
        failures = 0
        rate_limited_since: float | None = None
        while True:
            answer = self._post_once(lines)
            status = 0 if answer is None else answer.status
            if answer is not None and not _retryable(status, persistent):
                return answer
            retry_after = _retry_after(answer)
            if status == 429 and retry_after is not None:
                rate_limited_since = rate_limited_since or time.monotonic()
                free = time.monotonic() - rate_limited_since < _MAX_RATE_LIMITED_SECONDS
            else:
                free = False
            if not free:
                failures += 1
            if status in _CONFIGURATION_4XX:  # only retried with a spool: say why it waits
                log.warning("cairn-analytics: the server answered %d; the spool keeps the "
                            "events and retries (check write_key and host)", status)  # fmt: skip
            if not persistent and failures > self._max_retries:
                return answer or Response(0, b'{"code":"network_error","message":"no answer"}')
            delay = max(retry_after or 0.0, self._backoff(failures))
            log.debug("retrying a batch in %.2fs (status %s)", delay, status or "none")
            if self._cancel.wait(delay):
                return None

    def _post_once(self, lines: list[bytes]) -> Response | None:
        body = batch_body(lines, iso_timestamp(time.time()))
        if self._gzip:
            body = gzip.compress(body, compresslevel=1, mtime=0)
        try:
            return self._transport.post("/v1/batch", body, self._headers)
        except TransportError as error:
            log.warning("cairn-analytics: no answer from the server: %s", error)
            return None
        except Exception:  # a user-supplied transport must not kill the sender thread
            log.exception("cairn-analytics: the transport failed")
            return None

    def _backoff(self, failures: int) -> float:
        """Exponential (0.5 s, 1 s, 2 s, ... up to `max_backoff`) with half of it random."""
        ceiling = min(self._max_backoff, 0.5 * (1 << min(max(failures - 1, 0), 30)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _retryable(status: int, persistent: bool) -> bool:
    if 200 <= status < 300:
        return False
    if status >= 500:
        return status not in _NOT_RETRIED_5XX
    return status in _RETRIED_4XX or (persistent and status in _CONFIGURATION_4XX)


def _retry_after(answer: Response | None) -> float | None:
    if answer is None or "retry-after" not in answer.headers:
        return None
    try:
        seconds = float(answer.headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: rare enough to treat as no hint
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _outcome(answer: Response) -> Outcome:
    body = _json_object(answer.body)
    if 200 <= answer.status < 300:
        reasons = body.get("rejected")
        if isinstance(reasons, list) and reasons:
            indexes = [r["index"] for r in reasons if isinstance(r, dict) and "index" in r]
            return Outcome(delivered=True, error=MessagesRejected(reasons), rejected=indexes)
        return Outcome(delivered=True)
    code = body.get("code")
    text = body.get("message") or answer.body[:200].decode(errors="replace")
    error = DeliveryFailed(
        f"the server answered {answer.status}: {text}" if answer.status else str(text),
        status=answer.status or None,
        code=code if isinstance(code, str) else None,
    )
    return Outcome(gave_up=True, error=error)


def _json_object(data: bytes) -> dict[str, object]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
