"""The browser SDK as a Python install ships it: `static/cairn.js`, built from `sdks/js` and
committed (docs/sdk-js.md), within its size budget. `make js-test` checks that it is current."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import cairn.web

BUNDLE = Path(cairn.web.__file__).parent / "static" / "cairn.js"
PACKAGE = Path(__file__).parents[2] / "sdks" / "js" / "package.json"
BUDGET = 10 * 1024  # bytes gzipped, as sdks/js/scripts/size.mjs


def test_cairn_js_stays_within_10_kb_gzipped() -> None:
    size = len(gzip.compress(BUNDLE.read_bytes(), compresslevel=9))
    assert size <= BUDGET, f"cairn.js is {size} bytes gzipped, over the {BUDGET} budget"


def test_cairn_js_is_the_build_of_the_sdk_version() -> None:
    version = json.loads(PACKAGE.read_text())["version"]
    assert BUNDLE.read_text().startswith(f"/*! cairn.js {version} |")
