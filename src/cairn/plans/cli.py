"""`cairn lint` and `cairn plans init`: thin commands over `cairn.plans.lint` and `.templates`.

The main `cairn` group attaches them with `attach(main)`; other `cairn plans ...` commands can
be added to the `plans` group.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["attach", "lint_command", "plans"]

# The linter and the plans are imported when a command runs, so that every other `cairn` command
# starts without them; tests check these equal `lint.FORMATS` and `plan.LIBRARIES`.
FORMATS = ("text", "json", "github")
TEMPLATES = ("ecommerce", "b2b-saas")


@click.command("lint")
@click.argument("target", required=False, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--events",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON-lines file of messages to check (one message or one {batch} per line).",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The tracking plan to check events or source against [default: naming rules only].",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="github prints workflow commands that annotate a pull request.",
)
def lint_command(
    target: Path | None, events: Path | None, plan_file: Path | None, output: str
) -> None:
    """Check a plan file, sample events or application source.

    TARGET is a plan (.yaml, .yml, .json), an events file (.jsonl) or a folder or file of
    Python, JavaScript or TypeScript source, whose analytics.track/identify/page/screen/group
    calls are checked. Prints `file:line:col rule [severity] message`; exits 1 on any error.
    """
    from cairn.plans.lint import exit_code, lint, render, summary

    if target is None and events is None:
        raise click.UsageError("give a plan file, a source folder, or --events FILE")
    findings = lint(target, events, plan_file)
    click.echo(render(findings, output), nl=False)
    if output == "text":
        click.echo(summary(findings), err=True)
    sys.exit(exit_code(findings))


@click.group("plans")
def plans() -> None:
    """Tracking plans: event schemas and naming rules per source (docs/plans.md)."""


@plans.command("init")
@click.option("--template", type=click.Choice(TEMPLATES), required=True, help="The library.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write [default: print the plan].",
)
@click.option("--name", help="The plan's name [default: the file's name, or my-plan].")
@click.option(
    "--expand", is_flag=True, help="Write every event of the library out instead of including it."
)
@click.option("--force", is_flag=True, help="Overwrite --out when it exists.")
def plans_init(
    template: str, out: Path | None, name: str | None, expand: bool, force: bool
) -> None:
    """Write a plan to start from, based on the ecommerce or b2b-saas event library."""
    from cairn.plans.templates import plan_template

    file = out.name if out is not None else "plan.yaml"
    default_name = out.stem if out is not None else "my-plan"
    text = plan_template(template, name=name or default_name, expand=expand, file=file)
    if out is None:
        click.echo(text, nl=False)
        return
    if out.exists() and not force:
        raise click.ClickException(f"{out} exists; use --force to overwrite it")
    out.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {out}. Check it with: cairn lint {out}", err=True)


@plans.command("apply")
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", required=True, help="The source (name or id) the plan is for.")
@click.option("--workspace", default="default", show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CAIRN_DATA_DIR",
    help="Folder of the embedded SQLite database [env: CAIRN_DATA_DIR].",
)
@click.option(
    "--database-url", envvar="CAIRN_DATABASE_URL", help="postgresql://... to use PostgreSQL."
)
def plans_apply(
    plan_file: Path, source: str, workspace: str, data_dir: Path | None, database_url: str | None
) -> None:
    """Install PLAN_FILE as the source's active plan (its next version; earlier ones are kept)."""
    from cairn.errors import CairnError
    from cairn.plans.plan import PlanError, load_plan
    from cairn.plans.store import PlanStore
    from cairn.settings import Settings
    from cairn.storage.base import storage_for
    from cairn.storage.people import PeopleStore
    from cairn.storage.sql import SQLStorage
    from cairn.workspaces import resolve_workspace

    try:
        plan = load_plan(plan_file)
    except PlanError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    storage = storage_for(Settings.load({"data_dir": data_dir, "database_url": database_url}))
    try:
        assert isinstance(storage, SQLStorage)
        ws = resolve_workspace(storage, workspace)
        found = [s for s in storage.list_sources(ws.id) if source in (s.name, s.id)]
        if not found:
            click.echo(f"error: no source {source!r} in workspace {workspace!r}", err=True)
            sys.exit(1)
        installed = PlanStore(PeopleStore(storage)).install(ws.id, found[0].id, plan)
    except CairnError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    finally:
        storage.close()
    click.echo(
        f"plan {installed['name']!r} installed on {found[0].name} as version {installed['version']}"
    )


def attach(main: click.Group) -> None:
    """Add `lint` and `plans` to the `cairn` command."""
    main.add_command(lint_command)
    main.add_command(plans)
