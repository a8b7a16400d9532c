"""Tracking calls found in application source, and which files to look in.

A `Call` is what a scanner (`pysource` for Python, `jssource` for JavaScript and TypeScript) read
from one `analytics.track(...)`, `.identify`, `.page`, `.screen` or `.group` call: the literal
event name and the literal properties or traits, with the line and column of every key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn.plans import paths

__all__ = [
    "KINDS",
    "PAYLOAD_KEY",
    "PYTHON_SUFFIXES",
    "SCRIPT_SUFFIXES",
    "Call",
    "Position",
    "is_sdk_module",
    "is_sdk_receiver",
    "source_files",
]

KINDS = ("track", "identify", "page", "screen", "group")
PAYLOAD_KEY = {
    "track": "properties",
    "page": "properties",
    "screen": "properties",
    "identify": "traits",
    "group": "traits",
}
PYTHON_SUFFIXES = (".py", ".pyi")
SCRIPT_SUFFIXES = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts")
MAX_SOURCE_BYTES = 2_000_000
_SKIPPED_DIRS = {
    "node_modules",
    "__pycache__",
    "site-packages",
    "dist",
    "build",
    "venv",
    "coverage",
}

# Names of objects that track: `analytics`, `window.analytics`, `self.analytics`, `segment`,
# `rudderanalytics`, `cairn`, `cairn_analytics`, `segmentClient`, ...
_RECEIVER = re.compile(r"analytics|segment|cairn|rudder", re.IGNORECASE)
# Modules of the SDKs: analytics-python (`analytics`, `segment.analytics`), Cairn's
# (`cairn_analytics`, `@cairn/...`), RudderStack's, `@segment/analytics-next`, `analytics-node`.
_SDK_MODULE = re.compile(r"analytics|segment|cairn|rudder", re.IGNORECASE)

Position = tuple[int, int]  # 1-based line and column


def is_sdk_receiver(name: str) -> bool:
    return _RECEIVER.search(name) is not None


def is_sdk_module(name: str) -> bool:
    return _SDK_MODULE.search(name) is not None


@dataclass
class Call:
    kind: str
    position: Position  # of the call
    event: str | None = None  # the literal event name (track)
    event_position: Position | None = None
    dynamic_event: bool = False  # an f-string or template literal: the name is built at run time
    payload: dict[str, Any] | None = None  # literal properties or traits; UNKNOWN where unreadable
    complete: bool = True  # False when the payload has spreads or computed keys
    positions: dict[str, Position] = field(default_factory=dict)  # message path → where written

    def message(self) -> dict[str, Any]:
        """The message this call sends, as far as the source says."""
        message: dict[str, Any] = {"type": self.kind}
        if self.kind == "track" and self.event is not None:
            message["event"] = self.event
        if self.payload is not None:
            message[PAYLOAD_KEY[self.kind]] = self.payload
        return message

    def where(self, path: str) -> Position:
        """Where the value at `path` (or the closest thing written) is in the source."""
        if not path:
            return self.event_position or self.position
        while path:
            if path in self.positions:
                return self.positions[path]
            path = _parent(path)
        return self.position


def _parent(path: str) -> str:
    steps = paths.parse_path(path)
    parent = ""
    for step in steps[:-1]:
        parent = paths.item(parent, step) if isinstance(step, int) else paths.child(parent, step)
    return parent


def source_files(root: Path) -> Iterator[Path]:
    """The Python, JavaScript and TypeScript files under `root` (or `root` itself), in order;
    dependencies, build output and hidden folders are skipped."""
    suffixes = PYTHON_SUFFIXES + SCRIPT_SUFFIXES
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix in suffixes and not name.endswith((".min.js", ".d.ts")):
                yield path
