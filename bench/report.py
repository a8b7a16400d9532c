"""The benchmark's table, and its verdict against the targets of the ingest issue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadgen import LoadResult
from servers import Usage

__all__ = ["Row", "print_report", "table"]

_HEADERS = ("server", "events/s", "req/s", "p50 ms", "p99 ms", "max ms", "x ceiling", "RSS MB",
            "server cores", "server µs/event", "loadgen cores", "other cores", "stored before",
            "stored check", "errors")  # fmt: skip


@dataclass
class Row:
    """One line of the table: a server, how it was driven, what it did."""

    name: str
    result: LoadResult
    usage: Usage
    stored_before: int | None = None
    check: str = "-"
    notes: list[str] = field(default_factory=list)

    @property
    def open_loop(self) -> bool:
        return self.result.config.rate is not None

    @property
    def cairn(self) -> bool:
        return self.name.startswith("cairn")


def _cells(row: Row, ceiling: float | None) -> list[str]:
    result, usage = row.result, row.usage
    ratio = result.events_per_s / ceiling if ceiling and not row.open_loop else None
    errors = ", ".join(f"{k}: {v}" for k, v in result.errors.items()) or "-"
    return [
        row.name,
        f"{result.events_per_s:,.0f}",
        f"{result.requests_per_s:,.0f}",
        f"{result.percentile(0.50) * 1000:.1f}",
        f"{result.percentile(0.99) * 1000:.1f}",
        f"{max(result.latencies, default=0.0) * 1000:.1f}",
        "-" if ratio is None else f"{ratio:.2f}",
        f"{usage.rss_peak_mb:.0f}",
        f"{usage.server_cores:.2f}",
        f"{usage.server_cores * 1e6 / result.events_per_s:.1f}" if result.events_per_s else "-",
        f"{usage.generator_cores:.2f}",
        f"{usage.other_cores:.2f}",
        "-" if row.stored_before is None else f"{row.stored_before:,}",
        row.check,
        errors,
    ]


def table(lines: list[list[str]], markdown: bool) -> str:
    """`lines` (the header first) as aligned text columns, or as a markdown table."""
    if markdown:
        rule = ["---"] + ["---:"] * (len(lines[0]) - 1)
        return "\n".join("| " + " | ".join(line) + " |" for line in [lines[0], rule, *lines[1:]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                  enumerate(zip(line, widths, strict=True)))
        for line in lines
    )  # fmt: skip


def _ceiling(rows: list[Row]) -> float | None:
    """The no-op rate: the mean of the no-op rows (run before and after the others)."""
    rates = [r.result.events_per_s for r in rows if r.name.startswith("noop")]
    return sum(rates) / len(rates) if rates else None


@dataclass(frozen=True)
class _Target:
    name: str
    applies: Callable[[Row], bool]
    value: Callable[[Row], Any]
    met: Callable[[Any], bool]
    shown: str


_TARGETS = (
    _Target("events/s >= 50,000", lambda r: r.name == "cairn sqlite",
            lambda r: r.result.events_per_s, lambda v: v >= 50_000, "{:,.0f} events/s"),
    _Target("events/s >= 20,000", lambda r: r.name in ("cairn postgres", "cairn postgres-tuned"),
            lambda r: r.result.events_per_s, lambda v: v >= 20_000, "{:,.0f} events/s"),
    _Target("p99 < 50 ms at 5,000 events/s", lambda r: r.cairn and r.open_loop,
            lambda r: r.result.percentile(0.99) * 1000, lambda v: v < 50, "p99 {:.1f} ms"),
    _Target("RSS < 250 MB", lambda r: r.cairn,
            lambda r: r.usage.rss_peak_mb, lambda v: v < 250, "{:.0f} MB"),
    _Target("no event lost", lambda r: r.cairn,
            lambda r: r.check, lambda v: v.startswith("ok"), "{}"),
)  # fmt: skip


def _verdict(met: bool) -> str:
    return "MET   " if met else "MISSED"


def _verdicts(rows: list[Row], ceiling: float | None) -> list[str]:
    """One line per target and row it applies to: MET or MISSED, with the measured value."""
    lines = []
    for target in _TARGETS:
        for row in filter(target.applies, rows):
            value = target.value(row)
            shown = target.shown.format(value)
            lines.append(f"{_verdict(target.met(value))} {row.name}: {target.name} ({shown})")
    sqlite = next((r for r in rows if r.name == "cairn sqlite"), None)
    if sqlite is not None and ceiling:
        ratio = sqlite.result.events_per_s / ceiling
        lines.append(f"{_verdict(ratio >= 0.15)} cairn sqlite: >= 0.15 of the no-op ceiling "
                     f"({ratio:.2f})")  # fmt: skip
    return lines


def print_report(rows: list[Row], skipped: list[str], markdown: bool) -> None:
    ceiling = _ceiling(rows)
    lines = [list(_HEADERS), *(_cells(row, ceiling) for row in rows)]
    print()
    print(table(lines, markdown))
    print()
    for line in skipped:
        print(line)
    for row in rows:
        for note in row.notes:
            print(note)
    if ceiling:
        print(f"ceiling: {ceiling:,.0f} events/s, the mean of the no-op rows")
    for line in _verdicts(rows, ceiling):
        print(line)
    if rows:
        config = rows[0].result.config
        print(f"\n{config.connections} connections, batches of {config.batch_size} events, "
              f"{rows[0].result.body_bytes:,} bytes a request; {config.duration:.0f} s measured "
              f"after {config.warmup:.0f} s of warm-up; latency from the (scheduled) send to the "
              "whole answer")  # fmt: skip
