"""Automations: event accepted -> webhook received while the collector takes 1,000 events/s, and
100,000 pending waits firing on time.

1. A real `cairn serve` (SQLite, loopback webhooks allowed) with 20 live automations, each sending
   a webhook to a local receiver when its probe event arrives. Background load: Segment batches at
   1,000 events/s (bench/loadgen.py, open loop). Probes: one event every 100 ms, each for one of the
   20 automations; latency runs from just before the probe's request is sent to the receiver
   getting the webhook.
2. The engine in-process over SQLite (in the pipeline runner's thread, as in `cairn serve`) with
   100,000 runs waiting, due over 50 s: lateness = when the wait was recorded done - its due time.

Run: `python bench/automations.py` (or `make bench-automations`). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvloop

from loadgen import LoadConfig, Target, generate
from servers import start_cairn

AUTOMATIONS = 20


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


class _Receiver:
    """Records when each probe's webhook arrived (keyed by the probe id in the body)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived.setdefault(json.loads(body)["probe"], time.time())
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def _cli(*args: str, data_dir: Path) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "cairn", *args, "--json", "--data-dir", str(data_dir)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def _probe_loop(url: str, write_key: str, sent: dict[str, float], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, auth=(write_key, ""), timeout=30) as client:
        n = 0
        while not stop.wait(0.1):
            probe = f"p{n}"
            sent[probe] = time.time()
            client.post("/v1/track", json={"userId": f"probe-{n % 50}", "event": "Bench Probe",
                        "properties": {"automation": n % AUTOMATIONS, "probe": probe}})  # fmt: skip
            n += 1


def event_to_webhook(duration: float, rate: float) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="cairn-bench-automations-"))
    source = _cli("sources", "create", "bench", data_dir=data_dir)
    token = _cli("tokens", "create", data_dir=data_dir)["token"]
    receiver = _Receiver()
    os.environ["CAIRN_WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"
    server = start_cairn("automations", data_dir=data_dir)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
            for i in range(AUTOMATIONS):
                api.post("/api/v1/automations", json={
                    "name": f"probe {i}", "state": "live",
                    "trigger": {"event": "Bench Probe", "where": f"automation = {i}"},
                    "steps": [{"webhook": {"url": receiver.url,
                                           "body": {"probe": "{{ event.properties.probe }}"}}}],
                }).raise_for_status()  # fmt: skip
        sent: dict[str, float] = {}
        stop = threading.Event()
        prober = threading.Thread(target=_probe_loop,
                                  args=(server.url, source["write_key"], sent, stop))  # fmt: skip
        prober.start()
        target = Target("127.0.0.1", server.port, source["write_key"])
        load = uvloop.run(generate(target, LoadConfig(connections=8, duration=duration,
                                                      warmup=2.0, rate=rate)))  # fmt: skip
        stop.set()
        prober.join()
        time.sleep(3)
        latencies = [(receiver.arrived[p] - t) * 1000 for p, t in sent.items()
                     if p in receiver.arrived]  # fmt: skip
        return {"probes": len(sent), "received": len(latencies),
                "p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95),
                "max": max(latencies, default=float("nan")),
                "load": load.events_per_s, "load_errors": dict(load.errors)}  # fmt: skip
    finally:
        server.stop()
        receiver.server.shutdown()


def pending_waits(count: int, spread_s: float) -> dict[str, Any]:
    from cairn.automations.engine import AutomationEngine
    from cairn.identity.rules import IdentityRules
    from cairn.ingest.timestamps import now_ms
    from cairn.pipeline.runner import Pipeline, Runner
    from cairn.storage.sqlite import SQLiteStorage

    storage = SQLiteStorage(Path(tempfile.mkdtemp(prefix="cairn-bench-waits-")) / "cairn.db")
    storage.migrate()
    ws = storage.create_workspace("bench")
    pipeline = Pipeline(storage, IdentityRules())
    engine = AutomationEngine(pipeline.store, None)
    aid = engine.automations.create(ws.id, {"name": "waits", "state": "live",
        "trigger": {"event": "Never Sent"}, "steps": [{"wait": "1m"}]}).id  # fmt: skip
    start = now_ms() + 5_000
    step = spread_s * 1000 / count
    rows = []
    for i in range(count):
        due = start + int(i * step)
        rows.append((ws.id, aid, 1, i + 1, "waiting", "0", due - 60_000, due, "{}", due, due))
    with pipeline.store.tx() as tx:
        tx.many(
            "INSERT INTO automation_runs (workspace_id, automation_id, version, person_id, state, "
            "step, step_ms, due_ms, trigger, created_ms, updated_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    runner = Runner(pipeline, followers=[engine])
    runner.start()
    deadline = time.monotonic() + spread_s + 60
    while time.monotonic() < deadline:
        left = pipeline.store.rows(
            "SELECT count(*) FROM automation_runs WHERE state <> 'completed'")[0][0]  # fmt: skip
        if left == 0:
            break
        time.sleep(0.5)
    runner.stop()
    late = [
        float(at - (step_ms + 60_000))
        for at, step_ms in pipeline.store.rows(
            "SELECT s.at_ms, r.step_ms FROM automation_run_steps s JOIN automation_runs r "
            "ON r.id = s.run_id WHERE s.outcome = 'waited'"
        )
    ]
    storage.close()
    return {"fired": len(late), "p50": _percentile(late, 0.5), "p95": _percentile(late, 0.95),
            "max": max(late, default=float("nan"))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--waits", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=50.0)
    args = parser.parse_args()
    hooks = event_to_webhook(args.duration, args.rate)
    waits = pending_waits(args.waits, args.spread)
    print("| measure | result | target |")
    print("|---|---|---|")
    print(f"| event accepted -> webhook received, {AUTOMATIONS} live automations, collector at "
          f"{hooks['load']:,.0f} events/s | p50 {hooks['p50']:.0f} ms, p95 {hooks['p95']:.0f} ms, "
          f"max {hooks['max']:.0f} ms ({hooks['received']}/{hooks['probes']} probes) "
          "| p95 <= 250 ms |")  # fmt: skip
    print(f"| {args.waits:,} pending waits due over {args.spread:.0f} s: lateness | "
          f"p50 {waits['p50']:.0f} ms, p95 {waits['p95']:.0f} ms, max {waits['max']:.0f} ms "
          f"({waits['fired']:,} fired) | within 1 s |")  # fmt: skip
    if hooks["load_errors"]:
        print(f"load errors: {hooks['load_errors']}")


if __name__ == "__main__":
    main()
