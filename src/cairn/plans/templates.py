"""Plans to start from (`cairn plans init --template ecommerce|b2b-saas`)."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml

from cairn.plans.plan import LIBRARIES, library
from cairn.plans.reader import Section

__all__ = ["plan_template"]

_HEADER = """\
# A Cairn tracking plan (docs/plans.md). Check it with `cairn lint {file}` and your code with
# `cairn lint src/ --plan {file}`; install it on a source with
# `cairn plans apply {file} --source <source>`.
"""

_MODES = """
# unplanned: allow | flag | block events the plan does not list;
# violations: flag | omit (drop the offending properties) | block events that break a schema.
modes:
  unplanned: flag
  violations: flag

# Other modes for some sources, by source name:
# sources:
#   web: {unplanned: block, violations: omit}

naming:
  exceptions: []   # event or property names accepted as they are
  extra_verbs: []  # more words that count as a past-tense action
  severity: {}     # rule id: error | warning | info | off
"""


def plan_template(
    template: str, *, name: str, expand: bool = False, file: str = "plan.yaml"
) -> str:
    """A plan file's text that includes the library `template` (or, with `expand`, holds all of
    its events written out) and passes `cairn lint`."""
    if template not in LIBRARIES:
        raise ValueError(f"unknown template {template!r}: use {', '.join(LIBRARIES)}")
    header = _HEADER.format(file=file) + _dump({"name": name})
    body = _expanded(template) if expand else _included(template)
    return header + body + _MODES


def _included(template: str) -> str:
    events = ", ".join(library(template).events)
    listing = textwrap.fill(
        f"Its events: {events}.", 96, initial_indent="# ", subsequent_indent="# "
    )
    return f"""include: [{template}]
{listing}

# Add your own events here, or extend the library's: properties listed here are added to the
# event's (or replace them), and a `required` list here replaces the library's.
events: {{}}
#  Order Completed:
#    properties:
#      gift_wrap: boolean
#      delivery_date: {{type: string, format: date}}
#  Newsletter Subscribed:
#    description: A visitor subscribed to the newsletter.
#    properties:
#      list_id: string
#    required: [list_id]
"""


def _expanded(template: str) -> str:
    raw = library(template)
    data: dict[str, Any] = {}
    for key, inner in (("context", "properties"), ("identify", "traits"), ("group", "traits")):
        section = getattr(raw, key)
        if section is not None:
            data[key] = _section(section, inner)
    data["events"] = {name: _section(s, "properties") for name, s in raw.events.items()}
    return (
        f"# Every event of the {template} library, written out: edit them as you need.\n"
        + _dump(data)
    )


def _section(section: Section, inner: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if section.get("description"):
        found["description"] = section["description"]
    if section.get("properties"):
        found[inner] = {k: _short(v) for k, v in section["properties"].items()}
    for key in ("required", "additional_properties"):
        if key in section:
            found[key] = section[key]
    return found


def _short(schema: dict[str, Any]) -> Any:
    """`{type: string}` written as `string`, nested schemas alike."""
    if set(schema) == {"type"} and isinstance(schema["type"], str):
        return schema["type"]
    short = dict(schema)
    if isinstance(short.get("properties"), dict):
        short["properties"] = {k: _short(v) for k, v in short["properties"].items()}
    if isinstance(short.get("items"), dict):
        short["items"] = _short(short["items"])
    return short


def _dump(data: dict[str, Any]) -> str:
    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=96)
    return text
