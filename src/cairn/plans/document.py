"""Reading a plan file (YAML or JSON) into plain data, remembering where every key was written.

YAML is read as data only: no tags, no duplicate keys, `yes`/`no`/`on`/`off` and dates stay text
(a country code `NO` is not false), and aliases cannot expand past `MAX_VALUES` values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_VALUES",
    "Document",
    "Location",
    "PlanError",
    "load_document",
    "parse_document",
]

MAX_FILE_BYTES = 2_000_000
MAX_VALUES = 200_000
_MAX_DEPTH = 64

Location = tuple[str | int, ...]


class PlanError(ValueError):
    """A plan that cannot be used. `str()` is `file:line: message`; `errors` holds every problem
    found in the file (this one first)."""

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.errors: tuple[PlanError, ...] = (self,)

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line) if part is not None)
        return f"{where}: {self.message}" if where else self.message


@dataclass
class Document:
    file: str
    data: Any
    marks: dict[Location, tuple[int, int]] = field(default_factory=dict)  # 1-based line, column

    def position(self, at: Location) -> tuple[int | None, int | None]:
        """Where the value at `at` (or its closest enclosing value) was written."""
        while True:
            if at in self.marks:
                return self.marks[at]
            if not at:
                return None, None
            at = at[:-1]


def load_document(path: str | Path) -> Document:
    """Read a plan file; PlanError (with a line when there is one) when it cannot be read."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PlanError(f"cannot read the file: {exc.strerror}", file) from None
    if len(raw) > MAX_FILE_BYTES:
        raise PlanError(f"the file is larger than {MAX_FILE_BYTES:,} bytes", file)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanError(f"the file is not UTF-8 (byte {exc.start})", file) from None
    return parse_document(text, file, json_only=Path(path).suffix.lower() == ".json")


def parse_document(text: str, file: str, *, json_only: bool = False) -> Document:
    """Parse YAML (JSON is YAML too), or strict JSON when `json_only`."""
    if not json_only:
        return _Walker(text, file).document()
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise PlanError(f"not valid JSON: {exc.msg}", file, exc.lineno, exc.colno) from None
    except ValueError as exc:
        raise PlanError(str(exc), file) from None
    try:  # JSON's positions come from the YAML reader, when it can read the file
        marks = _Walker(text, file).document().marks
    except PlanError:
        marks = {}
    return Document(file, data, marks)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's yes/no/on/off booleans and dates, with 1e5 as a number."""


_DROPPED = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(  # YAML 1.2 and JSON exponents without a dot: 1e5
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)


class _Walker:
    """Builds the data from YAML's node tree, so every key keeps its line and column."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.marks: dict[Location, tuple[int, int]] = {}
        self.count = 0

    def document(self) -> Document:
        loader = _Loader(self.text)
        try:
            root = loader.get_single_node()
            data = None if root is None else self._value(loader, root, (), 0)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "cannot be read"
            line = mark.line + 1 if mark is not None else None
            column = mark.column + 1 if mark is not None else None
            raise PlanError(f"not valid YAML: {problem}", self.file, line, column) from None
        except yaml.YAMLError as exc:
            raise PlanError(f"not valid YAML: {exc}", self.file) from None
        finally:
            loader.dispose()
        if root is not None:
            self.marks[()] = _position(root)
        return Document(self.file, data, self.marks)

    def _fail(self, message: str, node: yaml.Node) -> PlanError:
        line, column = _position(node)
        return PlanError(message, self.file, line, column)

    def _value(self, loader: _Loader, node: yaml.Node, at: Location, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self._fail(f"more than {MAX_VALUES:,} values (aliases expand too far?)", node)
        if depth > _MAX_DEPTH:
            raise self._fail(f"nested deeper than {_MAX_DEPTH} levels", node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(loader, node, at, depth)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.marks[(*at, index)] = _position(item)
                items.append(self._value(loader, item, (*at, index), depth + 1))
            return items
        return loader.construct_object(node)

    def _mapping(
        self, loader: _Loader, node: yaml.MappingNode, at: Location, depth: int
    ) -> dict[str, Any]:
        loader.flatten_mapping(node)
        found: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._fail("a key must be plain text", key_node)
            key = str(key_node.value)
            if key in found:
                raise self._fail(f"duplicate key {key!r}", key_node)
            self.marks[(*at, key)] = _position(key_node)
            found[key] = self._value(loader, value_node, (*at, key), depth + 1)
        return found


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
