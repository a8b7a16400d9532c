"""Where a profiled server spends its time: a text summary of py-spy's raw (collapsed) stacks.

`python bench/ingest.py --only sqlite --profile /tmp/cairn.txt` records them while the SQLite row
runs; `python bench/hotspots.py /tmp/cairn.txt` prints the functions with the most samples, on their
own (self) and with what they call (total), per thread.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

__all__ = ["summarize"]

_LINE = re.compile(r":\d+\)$")
# Frames worth a "total" line: the request path, not the start-up chain every sample shares.
_INTERESTING = ("cairn/", "litestar/", "msgspec", "sqlite3", "psycopg", "uvicorn/protocols")
_BOOT = ("cairn/__main__.py", "cairn/cli.py")


def _frames(stack: str) -> list[str]:
    """Frames of one stack, outermost first, without line numbers (a function counts once)."""
    return [_LINE.sub(")", frame.strip()) for frame in stack.split(";") if frame.strip()]


def _thread(frames: list[str]) -> str:
    """With `--threads` py-spy puts `thread (<id>): <name>` first."""
    return frames[0] if frames else "?"


def summarize(text: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames, n = _frames(stack), int(count)
        samples += n
        own[frames[-1] if len(frames) > 1 else "(no Python frame)"] += n
        threads[_thread(frames)] += n
        for frame in set(frames[1:]):
            if any(p in frame for p in _INTERESTING) and not any(b in frame for b in _BOOT):
                total[frame] += n
    if not samples:
        return "no samples"
    sections = [
        ("by thread:", threads),
        ("self (the function itself):", own),
        ("total (with what it calls):", total),
    ]
    lines = [f"{samples:,} samples"]
    for title, counts in sections:
        lines += ["", title, *_ranked(counts, samples, top)]
    return "\n".join(lines)


def _ranked(counts: Counter[str], samples: int, top: int) -> list[str]:
    return [f"  {n / samples:6.1%}  {name}" for name, n in counts.most_common(top)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(args.profile.read_text(), args.top))


if __name__ == "__main__":
    main()
