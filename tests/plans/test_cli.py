"""The commands, driven through click as `cairn` will attach them."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cairn.plans import cli, lint, plan
from cairn.plans.cli import attach

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def cairn() -> click.Group:
    @click.group()
    def main() -> None:
        """A stand-in for the `cairn` command."""

    attach(main)
    return main


def test_lint_source_with_a_plan_in_each_format(cairn: click.Group, tmp_path: Path) -> None:
    runner = CliRunner()
    plan = tmp_path / "plan.yaml"
    init = runner.invoke(cairn, ["plans", "init", "--template", "ecommerce", "--out", str(plan)])
    assert init.exit_code == 0, init.output
    text = runner.invoke(cairn, ["lint", str(FIXTURES), "--plan", str(plan)])
    assert text.exit_code == 1
    first = text.stdout.splitlines()[0]
    assert first.startswith(f"{FIXTURES / 'app.js'}:")
    assert " [error] " in first
    assert "errors" in text.stderr
    github = runner.invoke(cairn, ["lint", str(FIXTURES), "--format", "github"])
    assert github.stdout.startswith("::error file=")
    data = json.loads(runner.invoke(cairn, ["lint", str(FIXTURES), "--format", "json"]).stdout)
    assert data["error"] > 0


def test_lint_a_clean_plan_exits_zero(cairn: click.Group, tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(cairn, ["plans", "init", "--template", "b2b-saas"])
    assert printed.exit_code == 0
    assert "include: [b2b-saas]" in printed.stdout
    plan = tmp_path / "b2b.yaml"
    plan.write_text(printed.stdout)
    result = runner.invoke(cairn, ["lint", str(plan)])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No problems found." in result.stderr


def test_lint_events(cairn: click.Group, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"type": "track", "event": "Order Completed", "properties": {"orderId": 1}}\n'
    )
    result = CliRunner().invoke(cairn, ["lint", "--events", str(events)])
    assert result.exit_code == 1
    assert result.stdout == (
        f"{events}:1:1 property-snake-case [error] 'Order Completed': properties.orderId: "
        "'orderId' is camelCase: property names are snake_case; write 'order_id'.\n"
    )


def test_lint_needs_something_to_check(cairn: click.Group) -> None:
    result = CliRunner().invoke(cairn, ["lint"])
    assert result.exit_code == 2
    assert "give a plan file" in result.output


def test_init_does_not_overwrite(cairn: click.Group, tmp_path: Path) -> None:
    runner = CliRunner()
    plan = tmp_path / "plan.yaml"
    plan.write_text("mine")
    refused = runner.invoke(cairn, ["plans", "init", "--template", "ecommerce", "--out", str(plan)])
    assert refused.exit_code == 1
    assert "--force" in refused.output
    assert plan.read_text() == "mine"
    forced = ["plans", "init", "--template", "ecommerce", "--out", str(plan), "--force", "--expand"]
    assert runner.invoke(cairn, forced).exit_code == 0
    assert "Order Completed:" in plan.read_text()
    assert "name: plan" in plan.read_text()


def test_choices_match_the_library() -> None:
    assert cli.FORMATS == lint.FORMATS
    assert cli.TEMPLATES == plan.LIBRARIES
