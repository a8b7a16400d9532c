"""Automations as code: YAML (or JSON) files of the JSON form, read with the line of every path so
errors point at the line (`cairn automations apply DIR`)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.automations.definition import Definition, DefinitionError, parse_definition

__all__ = ["FileError", "load_dir", "load_text"]

_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class FileError(Exception):
    """Every problem found in a folder of definitions: (file, message) pairs."""

    problems: list[tuple[str, str]]

    def __str__(self) -> str:
        return "\n".join(f"{name}: {message}" for name, message in self.problems)


def load_text(text: str, name: str = "<text>") -> Definition:
    """The definition in YAML or JSON `text`; DefinitionError with the line otherwise."""
    yaml: Any = importlib.import_module("yaml")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(f"not valid YAML: {problem}", at="/", line=line) from None
    lines: dict[str, int] = {}
    if node is not None:
        _lines(node, "", lines, yaml)
    return parse_definition(data, lines)


def _lines(node: Any, path: str, lines: dict[str, int], yaml: Any) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}/{key.value}"
            lines[child] = key.start_mark.line + 1
            _lines(value, child, lines, yaml)
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            _lines(value, f"{path}/{index}", lines, yaml)


def load_dir(folder: Path) -> list[tuple[str, Definition]]:
    """Every definition in `folder` (sorted by file name), or FileError listing every problem."""
    if not folder.is_dir():
        raise FileError([(str(folder), "not a folder")])
    found: list[tuple[str, Definition]] = []
    problems: list[tuple[str, str]] = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in _SUFFIXES or not path.is_file():
            continue
        try:
            found.append((path.name, load_text(path.read_text(encoding="utf-8"), path.name)))
        except (DefinitionError, UnicodeDecodeError) as exc:
            problems.append((path.name, getattr(exc, "message", str(exc))))
    if problems:
        raise FileError(problems)
    return found
