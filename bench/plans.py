"""Tracking plans: what checking every event costs the pipeline (issue 5).

One command (`make bench-plans`), one table. A log of 200,000 events (bench/world.py's
`plans_chunk`: the everyday activity of bench/pipeline.py's 100,000 people, about 60% ecommerce
tracks, with 5% of the tracks broken on purpose: bad names, unplanned events, a price as a
string, camelCase keys, a missing id) is written once through the collector's own `normalize` and
`Storage.append` and cached under `bench/.data` (keyed by the migrations' hash). Then, in this
process, `Pipeline.run_until_idle()` is timed from a fresh cursor on a fresh copy of that log for
each variant:

- **no plans stage**: the pipeline without its first stage (the true baseline);
- **naming rules only**: the full pipeline with no plan installed (naming rules always run);
- **ecommerce plan, flag**: `plan_from_json({"include": ["ecommerce"], "modes": flag/flag})`
  installed on the source with `Pipeline.plans.install`;
- **ecommerce plan, block**: the same plan in block/block modes.

The variants run in turns (`--rounds`, 3 by default) so that the VM's drift spreads over all of
them; each row shows the round with the least CPU per event. Overheads are the share of a
worker's throughput that checking costs, from CPU per event (1 - baseline µs / variant µs): the
benchmark process does nothing else, so CPU per event is what bounds a worker, while wall-clock
events/s move with whatever else the 2-core VM runs (shown anyway).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass, field

from cairn.pipeline.event import Event
from cairn.pipeline.runner import STAGES, Pipeline
from cairn.plans.plan import CompiledPlan, check_naming_only, plan_from_json
from cairn.settings import Settings
from cairn.storage.base import Storage, open_storage
from cairn.storage.sql import SQLStorage
from prefill import DATA, copy_sqlite, fill, prefill_sqlite
from report import table
from servers import machine_busy_seconds
from world import BAD_SHARE, machine_line, plans_chunk

TARGET_OVERHEAD = 0.10
ALONE = 50_000
KIND = "plans_log"

_VARIANTS: dict[str, dict[str, str] | None] = {
    "no plans stage": None,
    "naming rules only (no plan)": None,
    "ecommerce plan, flag": {"unplanned": "flag", "violations": "flag"},
    "ecommerce plan, block": {"unplanned": "block", "violations": "block"},
}
BASELINE, NAMING = "no plans stage", "naming rules only (no plan)"


@dataclass
class Run:
    events: int
    seconds: float
    cpu_seconds: float
    other_cores: float
    flagged: int
    blocked: int
    violations: int
    persons: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds * 1e6 / self.events


@dataclass
class Variant:
    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        """The round with the least CPU per event: the one other work on the VM disturbed least."""
        return min(self.runs, key=lambda r: r.cpu_us)


def _fill(storage: Storage, total: int) -> tuple[str, str]:
    return fill(storage, total, plans_chunk)


def _count(storage: SQLStorage, sql: str) -> int:
    return int(storage.rows(sql)[0][0])


def measure(database: str, name: str, modes: dict[str, str] | None) -> Run:
    """`run_until_idle` over a fresh copy of the log, with the variant's stages and plan."""
    storage = open_storage(database)
    try:
        assert isinstance(storage, SQLStorage)
        settings = Settings()
        base = Pipeline.from_settings(storage, settings)
        stages = [s for s in STAGES if s[0] != "plans"] if name == BASELINE else STAGES
        pipeline = Pipeline(storage, base.rules, batch_size=settings.pipeline_batch, stages=stages)
        assert pipeline.store.cursor().position == 0
        if modes is not None:
            ws = storage.list_workspaces()[0]
            source = str(storage.rows("SELECT id FROM sources ORDER BY id LIMIT 1")[0][0])
            plan = plan_from_json({"name": "bench", "include": ["ecommerce"], "modes": modes})
            pipeline.plans.install(ws.id, source, plan)
        busy, cpu, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
        done = pipeline.run_until_idle()
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu
        others = max(0.0, (machine_busy_seconds() - busy - cpu_seconds) / seconds)
        return Run(
            events=done, seconds=seconds, cpu_seconds=cpu_seconds, other_cores=others,
            flagged=_count(storage, "SELECT count(DISTINCT seq) FROM event_violations "
                                    "WHERE action <> 'block'"),
            blocked=_count(storage, "SELECT count(*) FROM quarantine"),
            violations=_count(storage, "SELECT count(*) FROM event_violations"),
            persons=_count(storage, "SELECT count(*) FROM persons WHERE merged_into IS NULL"),
        )  # fmt: skip
    finally:
        storage.close()


def check_alone(database: str, count: int) -> dict[str, float]:
    """CPU µs per message of the checks by themselves (what the plans stage calls), best of 3,
    over the first `count` messages of the log: steadier than the pipeline rows on a busy VM."""
    storage = open_storage(database)
    try:
        assert isinstance(storage, SQLStorage)
        messages = [Event.from_log(entry).message for entry in storage.read_log(0, count)]
    finally:
        storage.close()
    checks = {NAMING: check_naming_only}
    for name, modes in _VARIANTS.items():
        if modes is not None:
            plan = plan_from_json({"name": "bench", "include": ["ecommerce"], "modes": modes})
            checks[name] = CompiledPlan(plan).check
    out = {}
    for name, check in checks.items():
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for message in messages:
                check(message)
            best = min(best, time.process_time() - started)
        out[name] = best * 1e6 / len(messages)
    return out


def _overhead(run: Run, base: Run) -> float:
    """The share of the baseline's throughput that checking costs, from CPU per event (this
    process does nothing else, so CPU per event is what limits a worker's throughput; wall-clock
    rates move with whatever else the 2-core VM runs)."""
    return 1.0 - base.cpu_us / run.cpu_us


def print_report(
    variants: list[Variant], alone: dict[str, float], events: int, rounds: int, markdown: bool
) -> None:
    by_name = {v.name: v.best for v in variants}
    base, naming = by_name[BASELINE], by_name[NAMING]
    lines = [["variant", "events", "events/s", "s", "CPU µs/event", "vs no plans stage",
              "vs naming only", "flagged", "blocked", "violations", "persons", "other cores",
              "rounds CPU µs/event"]]  # fmt: skip
    for v in variants:
        r = v.best
        lines.append([
            v.name, f"{r.events:,}", f"{r.rate:,.0f}", f"{r.seconds:.1f}",
            f"{r.cpu_us:.1f}",
            "-" if v.name == BASELINE else f"{_overhead(r, base):+.1%}",
            "-" if v.name in (BASELINE, NAMING) else f"{_overhead(r, naming):+.1%}",
            f"{r.flagged:,}", f"{r.blocked:,}", f"{r.violations:,}", f"{r.persons:,}",
            f"{r.other_cores:.2f}", " / ".join(f"{x.cpu_us:.1f}" for x in v.runs),
        ])  # fmt: skip
    print()
    print(f"Pipeline throughput (one worker, in process, SQLite) over {events:,} logged events "
          f"({BAD_SHARE:.0%} of tracks broken on purpose); the round with the least CPU per event "
          f"of {rounds}; overheads from CPU per event:")  # fmt: skip
    print(table(lines, markdown))
    print()
    base_us = base.cpu_us
    lines = [["check", "CPU µs/message", "share of the no-plans-stage pipeline's CPU/event"]]
    for name, us in alone.items():
        lines.append([name, f"{us:.1f}", f"{us / base_us:.1%}"])
    print(f"The checks alone, in process, over {ALONE:,} messages of the log (best of 3):")
    print(table(lines, markdown))
    print()
    for name, us in alone.items():
        if name != NAMING:
            verdict = "MET   " if us / base_us <= TARGET_OVERHEAD else "MISSED"
            print(f"{verdict} {name}: the check alone is <= 10% of the pipeline's CPU per event "
                  f"({us / base_us:.1%})")  # fmt: skip
    for v in variants:
        if v.name == BASELINE:
            continue
        for label, against in (
            ("the no-plans-stage pipeline", base),
            ("naming rules only", naming),
        ):
            if v.name == NAMING and against is naming:
                continue
            cost = _overhead(v.best, against)
            verdict = "MET   " if cost <= TARGET_OVERHEAD else "MISSED"
            print(f"{verdict} {v.name}: checking costs <= 10% of throughput vs {label} "
                  f"({cost:+.1%})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events in the log (200,000)")
    parser.add_argument("--rounds", type=int, default=3, help="turns over the variants (3)")
    parser.add_argument("--quick", action="store_true", help="50,000 events, 1 round")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    events = args.events or (50_000 if args.quick else 200_000)
    rounds = 1 if args.quick else args.rounds
    print(machine_line(), flush=True)
    prefilled = prefill_sqlite(events, kind=KIND, filler=_fill)
    variants = [Variant(name) for name in _VARIANTS]
    folder = DATA / "run-plans"
    try:
        for turn in range(rounds):
            for variant in variants:
                copy = copy_sqlite(prefilled, folder)
                run = measure(f"sqlite:///{copy / 'cairn.db'}", variant.name,
                              _VARIANTS[variant.name])  # fmt: skip
                variant.runs.append(run)
                print(f"  round {turn + 1}: {variant.name}: {run.rate:,.0f} events/s "
                      f"({run.seconds:.1f} s)", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    alone = check_alone(prefilled.database, ALONE)
    print_report(variants, alone, events, rounds, args.markdown)
    print(f"load average {os.getloadavg()[0]:.2f} after the run")


if __name__ == "__main__":
    main()
