"""Definitions: the issue's JSON shape, YAML files with the same shape, errors with path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.automations.definition import (
    Branch,
    DefinitionError,
    Wait,
    WaitUntil,
    Webhook,
    duration_ms,
    next_step,
    parse_definition,
)
from cairn.automations.files import FileError, load_dir, load_text

EXAMPLE = {
    "name": "Big order follow-up",
    "state": "live",
    "trigger": {"event": "Order Completed", "where": "total > 100"},
    "audience": 'plan = "pro"',
    "frequency": "once_per:7d",
    "goal": 'did "Review Written"',
    "exit": "unsubscribed = true",
    "steps": [
        {"wait": "10m"},
        {
            "wait_until": 'did "Order Shipped"',
            "at_most": "1h",
            "then": [{"webhook": {"url": "https://example.com/hook", "body": {"t": "{{ x }}"}}}],
            "else": [{"set_traits": {"late": True}}],
        },
        {"branch": "vip = true", "then": [{"track": {"event": "VIP Seen"}}], "else": []},
        {"message": {"title": "Thanks"}},
    ],
}


def test_the_issue_shape_reads() -> None:
    d = parse_definition(EXAMPLE)
    assert d.trigger.kind == "event"
    assert d.trigger.where is not None
    assert d.frequency.kind == "once_per"
    assert d.frequency.window_ms == 7 * 86_400_000
    assert isinstance(d.steps[0], Wait)
    assert d.steps[0].ms == 600_000
    wait_until = d.steps[1]
    assert isinstance(wait_until, WaitUntil)
    assert isinstance(wait_until.then[0], Webhook)
    assert wait_until.then[0].id == "1/then/0"
    assert isinstance(d.steps[2], Branch)


def test_next_step_leaves_branches() -> None:
    steps = parse_definition(EXAMPLE).steps
    assert next_step(steps, "0") == "1"
    assert next_step(steps, "1/then/0") == "2"
    assert next_step(steps, "2/then/0") == "3"
    assert next_step(steps, "3") is None


@pytest.mark.parametrize(
    ("change", "at"),
    [
        ({"frequency": "twice"}, "/frequency"),
        ({"state": "on"}, "/state"),
        ({"trigger": {"event": "X", "segment": "Y"}}, "/trigger"),
        ({"trigger": {"event": "X", "where": "did x"}}, "/trigger/where"),
        ({"audience": "plan = "}, "/audience"),
        ({"steps": []}, "/steps"),
        ({"steps": [{"wait": "ten minutes"}]}, "/steps/0/wait"),
        ({"steps": [{"wait_until": "a = 1"}]}, "/steps/0"),
        ({"steps": [{"branch": "a = 1", "then": [{"webhook": {"url": "ftp://x"}}]}]},
         "/steps/0/then/0/webhook/url"),
        ({"steps": [{"webhook": {"url": "https://x.io", "body": {"a": ["{{ x"]}}}]},
         "/steps/0/webhook/body/a/0"),
        ({"colour": "red"}, "/colour"),
    ],
)  # fmt: skip
def test_errors_point_at_the_path(change: dict[str, object], at: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition({**EXAMPLE, **change})
    assert info.value.at == at
    assert at in info.value.message


def test_durations() -> None:
    assert duration_ms("1h30m") == 5_400_000
    assert duration_ms("45s") == 45_000
    assert duration_ms("2w") == 14 * 86_400_000
    for bad in ("", "0m", "10", "1y", "m10", "400d"):
        with pytest.raises(ValueError, match="duration"):
            duration_ms(bad)


YAML = """\
name: Welcome
state: live
trigger:
  event: Signed Up
steps:
  - wait: 10m
  - webhook:
      url: https://example.com/hook
  - wait: soon
"""


def test_yaml_errors_point_at_the_line() -> None:
    with pytest.raises(DefinitionError) as info:
        load_text(YAML)
    assert info.value.at == "/steps/2/wait"
    assert info.value.line == 9
    assert "(line 9)" in info.value.message


def test_broken_yaml_points_at_the_line() -> None:
    with pytest.raises(DefinitionError) as info:
        load_text("name: x\nsteps: [\n  - wait: 1m\n")
    assert info.value.line is not None


def test_a_folder_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(YAML.replace("soon", "5m"))
    (tmp_path / "b.yaml").write_text(YAML.replace("Welcome", "Other"))
    (tmp_path / "c.yml").write_text("name: [")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(FileError) as info:
        load_dir(tmp_path)
    assert [name for name, _ in info.value.problems] == ["b.yaml", "c.yml"]
    (tmp_path / "b.yaml").unlink()
    (tmp_path / "c.yml").unlink()
    assert [d.name for _, d in load_dir(tmp_path)] == ["Welcome"]
