"""Paths into a message, as violations name them: `properties.products[0].price`.

A key that is not a plain word is written in brackets as a JSON string: `properties["utm.source"]`.
"""

from __future__ import annotations

import json
import re

__all__ = ["child", "item", "parse_path"]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$]+")
_STEP = re.compile(r'\.([A-Za-z0-9_$]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def child(path: str, key: str) -> str:
    """The path of `key` inside the object at `path` ("" is the message itself)."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def item(path: str, index: int) -> str:
    """The path of element `index` of the array at `path`."""
    return f"{path}[{index}]"


def parse_path(path: str) -> list[str | int]:
    """The steps of a path: `properties.products[0].price` → ["properties", "products", 0, "price"].

    Raises ValueError for a string that `child` and `item` could not have written.
    """
    first = re.match(r"[A-Za-z0-9_$]+", path)
    if first is None:
        raise ValueError(f"not a message path: {path!r}")
    steps: list[str | int] = [first.group()]
    position = first.end()
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"not a message path: {path!r}")
        plain, index, quoted = step.groups()
        steps.append(plain if plain is not None else int(index) if index else json.loads(quoted))
        position = step.end()
    return steps
