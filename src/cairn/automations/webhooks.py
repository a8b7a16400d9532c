"""Signed webhook deliveries: at least once, with a stable idempotency key, retried with backoff
and jitter, parked in a dead-letter list an operator can replay.

- A delivery is a row (`webhook_deliveries`) written in the same transaction as the run step
  that makes it. `Deliveries.dispatch()` (called from the engine, under the pipeline's lease)
  claims due rows and sends them on a thread pool, so one slow receiver never holds up another:
  at most `per_endpoint` attempts run against one endpoint (the URL without its query) at a
  time and the
  rest of the pool serves the other endpoints.
- Claiming pushes `next_ms` past the attempt's timeout, so a delivery whose server died between
  sending and recording is sent again after a restart, with the same `Idempotency-Key`.
- Network errors, timeouts, 5xx and 429 (honouring `Retry-After`) are retried with exponential
  backoff and full jitter until `horizon` after the delivery was made; any other 4xx (and a
  refused target) gives up at once. Giving up makes the delivery `dead`.
- Signature: `X-Cairn-Signature` = hex HMAC-SHA256(secret, f"{timestamp}.{body}") with the
  timestamp (Unix seconds) in `X-Cairn-Timestamp` (docs/automations.md shows how to check it).
- Targets that resolve to loopback, private, link-local, multicast or reserved addresses are
  refused unless `allow_private`; redirects are followed by hand (at most 5), each hop checked.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from cairn import __version__
from cairn.errors import Conflict, NotFound
from cairn.ids import parse_int
from cairn.ingest.timestamps import format_ms, now_ms
from cairn.storage.people import PeopleStore, Tx, decode_json

__all__ = [
    "Deliveries",
    "RefusedTarget",
    "check_target",
    "get_delivery",
    "list_deliveries",
    "replay_delivery",
    "retry_delay",
    "sign",
    "workspace_secret",
]

log = logging.getLogger(__name__)
_MAX_REDIRECTS = 5
_BASE_DELAY_S = 1.0
_MAX_DELAY_S = 3600.0


class RefusedTarget(Exception):
    """The webhook's URL (or a redirect) points at an address Cairn will not call."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def workspace_secret(store: PeopleStore, workspace_id: int, tx: Tx | None = None) -> str:
    """The workspace's webhook signing secret, made on first use (inside `tx` when given)."""
    if tx is None:
        with store.tx() as own:
            return workspace_secret(store, workspace_id, own)
    tx.run(
        "INSERT INTO webhook_secrets (workspace_id, secret, created_ms) VALUES (?, ?, ?) "
        "ON CONFLICT (workspace_id) DO NOTHING",
        (workspace_id, "whsec_" + secrets.token_hex(24), now_ms()),
    )
    rows = tx.all("SELECT secret FROM webhook_secrets WHERE workspace_id = ?", (workspace_id,))
    return str(rows[0][0])


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse `url` unless it is http(s) and every address its host resolves to is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedTarget(f"not an http(s) URL: {url[:200]}")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RefusedTarget(str(exc)) from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConnectionError(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if _private(address):
            raise RefusedTarget(
                f"{parts.hostname} resolves to {address}, a loopback, private or link-local "
                "address (set webhook_allow_private_targets to allow)"
            )


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _private(address.ipv4_mapped)
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def retry_delay(
    attempt: int, retry_after: float | None = None, base: float = _BASE_DELAY_S
) -> float:
    """Seconds before attempt `attempt + 1`: "equal jitter" over base * 2^attempt (half fixed,
    half random, at most an hour), and never sooner than the receiver's Retry-After."""
    ceiling = min(base * 2.0 ** min(attempt, 20), _MAX_DELAY_S)
    delay = ceiling / 2 + random.random() * ceiling / 2
    return max(delay, retry_after or 0.0)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if (seconds := parse_int(value)) is not None:
        return float(seconds)
    try:
        return max(float(parsedate_to_datetime(value).timestamp()) - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


@dataclass
class Attempt:
    """What one attempt came to: `delivered`, `retry` (after `delay` s) or `dead`."""

    outcome: str
    status_code: int | None = None
    error: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class _Claimed:
    id: int
    url: str
    headers: dict[str, str]
    body: str
    secret: str
    key: str
    attempts: int
    created_ms: int


class Deliveries:
    """Sends due deliveries on a thread pool and records every attempt."""

    def __init__(
        self,
        store: PeopleStore,
        *,
        allow_private: bool = False,
        timeout: float = 10.0,
        horizon_s: float = 86_400.0,
        workers: int = 32,
        per_endpoint: int = 4,
        base_delay: float = _BASE_DELAY_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.allow_private = allow_private
        self.timeout = timeout
        self.horizon_ms = int(horizon_s * 1000)
        self.per_endpoint = per_endpoint
        self.base_delay = base_delay
        self.on_done: Callable[[], None] = lambda: None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cairn-webhook")
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport,
            headers={"user-agent": f"Cairn-Webhooks/{__version__}"},
        )  # fmt: skip
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._claimed: set[int] = set()
        self.backlog = False
        self._recovered = False

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # dispatch ------------------------------------------------------------------------------------
    def next_due_ms(self) -> int | None:
        rows = self.store.rows(
            "SELECT min(next_ms) FROM webhook_deliveries WHERE status IN ('pending', 'sending')"
        )
        due = int(rows[0][0]) if rows and rows[0][0] is not None else None
        if due is not None and self.backlog:
            due = max(due, now_ms() + 50)  # waiting for a slot: an attempt ending wakes us
        return due

    def dispatch(self, limit: int = 200) -> bool:
        """Claim due deliveries and start them; True if any started."""
        now = now_ms()
        if not self._recovered:
            self._recover(now)
        rows = self.store.rows(
            "SELECT id, url, headers, body, secret, idempotency_key, attempts, created_ms, next_ms "
            "FROM webhook_deliveries WHERE status IN ('pending', 'sending') AND next_ms <= ? "
            "ORDER BY next_ms LIMIT ?",
            (now, limit),
        )
        started, self.backlog = False, False
        lease = now + int(self.timeout * 1000 * (_MAX_REDIRECTS + 1)) + 30_000
        for row in rows:
            claimed = _Claimed(row[0], row[1], decode_json(row[2]), row[3], row[4], row[5],
                               row[6], row[7])  # fmt: skip
            endpoint = _endpoint(claimed.url)
            with self._lock:
                if claimed.id in self._claimed:
                    continue
                if self._in_flight.get(endpoint, 0) >= self.per_endpoint:
                    self.backlog = True
                    continue
                self._in_flight[endpoint] = self._in_flight.get(endpoint, 0) + 1
                self._claimed.add(claimed.id)
            with self.store.tx() as tx:
                tx.run(
                    "UPDATE webhook_deliveries SET status = 'sending', next_ms = ? WHERE id = ?",
                    (lease, claimed.id),
                )
            self._pool.submit(self._deliver, claimed, endpoint)
            started = True
        return started

    def _recover(self, now: int) -> None:
        """Deliveries a previous process was sending when it stopped are due again now (this
        engine holds the pipeline's lease, so no one else is sending them)."""
        with self.store.tx() as tx:
            tx.run(
                "UPDATE webhook_deliveries SET status = 'pending', next_ms = ? "
                "WHERE status = 'sending'",
                (now,),
            )
        self._recovered = True

    def _deliver(self, claimed: _Claimed, endpoint: str) -> None:
        try:
            started = time.monotonic()
            at = now_ms()
            attempt = self.attempt(claimed)
            self._record(claimed, attempt, at, int((time.monotonic() - started) * 1000))
        except Exception:
            log.exception("webhook delivery %d: could not record the attempt", claimed.id)
        finally:
            with self._lock:
                self._in_flight[endpoint] -= 1
                self._claimed.discard(claimed.id)
            self.on_done()

    # one attempt -----------------------------------------------------------------------------------
    def attempt(self, claimed: _Claimed) -> Attempt:
        body = claimed.body.encode()
        timestamp = int(time.time())
        headers = {
            **claimed.headers,
            "content-type": "application/json",
            "idempotency-key": claimed.key,
            "x-cairn-timestamp": str(timestamp),
            "x-cairn-signature": sign(claimed.secret, timestamp, body),
            "x-cairn-delivery": str(claimed.id),
        }
        url = claimed.url
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                check_target(url, allow_private=self.allow_private)
                response = self._client.post(url, content=body, headers=headers)
                if (
                    response.status_code in (301, 302, 303, 307, 308)
                    and "location" in response.headers
                ):
                    url = urljoin(url, response.headers["location"])
                    continue
                return self._judge(response, claimed.attempts)
            return Attempt("dead", None, f"more than {_MAX_REDIRECTS} redirects")
        except RefusedTarget as exc:
            return Attempt("dead", None, str(exc))
        except (httpx.HTTPError, ConnectionError, OSError) as exc:
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "network error"
            delay = retry_delay(claimed.attempts, base=self.base_delay)
            return Attempt("retry", None, f"{kind}: {exc!s}"[:500], delay)

    def _judge(self, response: httpx.Response, attempts: int) -> Attempt:
        code = response.status_code
        if 200 <= code < 300:
            return Attempt("delivered", code)
        error = f"HTTP {code}: {response.text[:200]}"
        if code == 429 or code >= 500:
            wait = _retry_after(response.headers.get("retry-after")) if code in (429, 503) else None
            return Attempt("retry", code, error, retry_delay(attempts, wait, self.base_delay))
        return Attempt("dead", code, error)

    def _record(self, claimed: _Claimed, attempt: Attempt, at: int, took_ms: int) -> None:
        now = now_ms()
        outcome = attempt.outcome
        next_ms = now + int(attempt.delay * 1000) if outcome == "retry" else None
        if next_ms is not None and next_ms > claimed.created_ms + self.horizon_ms:
            outcome, next_ms = "dead", None
            attempt.error = f"{attempt.error} (gave up: retried for {self.horizon_ms // 1000} s)"
        status = "pending" if outcome == "retry" else outcome
        with self.store.tx() as tx:
            tx.run(
                "INSERT INTO webhook_attempts (delivery_id, at_ms, duration_ms, status_code, "
                "error) VALUES (?, ?, ?, ?, ?)",
                (claimed.id, at, took_ms, attempt.status_code, attempt.error),
            )
            tx.run(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_ms = ?, "
                "last_status = ?, last_error = ?, updated_ms = ?, delivered_ms = ? WHERE id = ?",
                (status, next_ms, attempt.status_code, attempt.error, now,
                 now if status == "delivered" else None, claimed.id),
            )  # fmt: skip
            if status != "pending":
                _wake_run(tx, claimed.id, status, now)


_DELIVERY_COLUMNS = (
    "id, automation_id, run_id, step, idempotency_key, url, status, attempts, next_ms, "
    "last_status, last_error, created_ms, updated_ms, delivered_ms"
)


def _delivery_json(row: Any) -> dict[str, Any]:
    (did, aid, run, step, key, url, status, attempts, next_ms, last_status, last_error, created,
     updated, delivered) = row  # fmt: skip
    return {
        "id": did, "automation_id": aid, "run_id": run, "step": step, "idempotency_key": key,
        "url": url, "status": status, "attempts": attempts,
        "next_attempt_at": format_ms(next_ms) if next_ms and status == "pending" else None,
        "last_status": last_status, "last_error": last_error, "created_at": format_ms(created),
        "updated_at": format_ms(updated),
        "delivered_at": format_ms(delivered) if delivered else None,
    }  # fmt: skip


def attempts_of(store: PeopleStore, delivery_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    if not delivery_ids:
        return out
    marks = ",".join("?" * len(delivery_ids))
    for did, at, took, code, error in store.rows(
        "SELECT delivery_id, at_ms, duration_ms, status_code, error FROM webhook_attempts "
        f"WHERE delivery_id IN ({marks}) ORDER BY id",
        delivery_ids,
    ):
        out.setdefault(did, []).append(
            {"at": format_ms(at), "duration_ms": took, "status_code": code, "error": error}
        )
    return out


def _wake_run(tx: Tx, delivery_id: int, status: str, now: int) -> None:
    """The run waiting on this delivery continues (delivered) or fails (dead) at its next look;
    a replayed delivery that succeeds brings its failed run back."""
    tx.run(
        "UPDATE automation_runs SET state = 'delivering', due_ms = ?, ended_ms = NULL, "
        "error = NULL WHERE id = (SELECT run_id FROM webhook_deliveries WHERE id = ?) "
        "AND step = (SELECT step FROM webhook_deliveries WHERE id = ?) "
        "AND (state = 'delivering' OR (state = 'failed' AND ? = 'delivered'))",
        (now, delivery_id, delivery_id, status),
    )


def _endpoint(url: str) -> str:
    """What the concurrency limit counts by: the URL without its query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# operators --------------------------------------------------------------------------------------
def list_deliveries(
    store: PeopleStore,
    workspace_id: int,
    *,
    status: str | None = None,
    limit: int = 100,
    after: int = 0,
) -> list[dict[str, Any]]:
    clauses = ["workspace_id = ?", "id > ?"]
    params: list[Any] = [workspace_id, after]
    if status is not None:
        if status not in ("pending", "sending", "delivered", "dead"):
            from cairn.errors import BadRequest

            raise BadRequest("status is pending, sending, delivered or dead", code="invalid_status")
        clauses.append("status = ?")
        params.append(status)
    rows = store.rows(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {' AND '.join(clauses)} "
        "ORDER BY id LIMIT ?",
        (*params, limit),
    )
    return [_delivery_json(row) for row in rows]


def get_delivery(store: PeopleStore, workspace_id: int, delivery_id: int) -> dict[str, Any]:
    rows = store.rows(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE workspace_id = ? AND id = ?",
        (workspace_id, delivery_id),
    )
    if not rows:
        raise NotFound(f"no delivery {delivery_id}")
    found = _delivery_json(rows[0])
    found["attempts_detail"] = attempts_of(store, [delivery_id]).get(delivery_id, [])
    return found


def replay_delivery(store: PeopleStore, workspace_id: int, delivery_id: int) -> dict[str, Any]:
    """Send a dead delivery again (same body and idempotency key, a fresh retry horizon)."""
    found = get_delivery(store, workspace_id, delivery_id)
    if found["status"] != "dead":
        raise Conflict(f"delivery {delivery_id} is {found['status']}, not dead",
                       code="not_dead")  # fmt: skip
    now = now_ms()
    with store.tx() as tx:
        tx.run(
            "UPDATE webhook_deliveries SET status = 'pending', next_ms = ?, created_ms = ?, "
            "updated_ms = ? WHERE id = ? AND status = 'dead'",
            (now, now, now, delivery_id),
        )
    return get_delivery(store, workspace_id, delivery_id)
