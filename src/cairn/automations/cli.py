"""`cairn automations ...` and `cairn deliveries ...`: thin commands over the automations library.

`cairn.cli` adds both groups to the `cairn` command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from cairn.errors import CairnError
from cairn.settings import Settings
from cairn.storage.base import storage_for
from cairn.storage.people import PeopleStore
from cairn.storage.sql import SQLStorage
from cairn.workspaces import DEFAULT_WORKSPACE, resolve_workspace

__all__ = ["automations_group", "deliveries_group"]


def _options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--workspace", default=DEFAULT_WORKSPACE, show_default=True),
            click.option(
                "--data-dir",
                type=click.Path(file_okay=False, path_type=Path),
                envvar="CAIRN_DATA_DIR",
                help="Folder of the embedded SQLite database [env: CAIRN_DATA_DIR].",
            ),
            click.option(
                "--database-url",
                envvar="CAIRN_DATABASE_URL",
                help="postgresql://... to use PostgreSQL [env: CAIRN_DATABASE_URL].",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):
        command = option(command)
    return command


@contextmanager
def _store(data_dir: Path | None, database_url: str | None, workspace: str) -> Iterator[Any]:
    """(store, workspace id) over the configured database; errors print and exit 1."""
    storage = storage_for(Settings.load({"data_dir": data_dir, "database_url": database_url}))
    assert isinstance(storage, SQLStorage)
    try:
        storage.migrate()
        yield PeopleStore(storage), resolve_workspace(storage, workspace).id
    except CairnError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    finally:
        storage.close()


def _print(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@click.group("automations")
def automations_group() -> None:
    """Automations: apply definitions from files, list them."""


@automations_group.command("apply")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_options
def apply(folder: Path, workspace: str, data_dir: Path | None, database_url: str | None,
          as_json: bool) -> None:  # fmt: skip
    """Load the YAML (or JSON) files in FOLDER, check them all, then create or update each
    automation by name (a new version when its definition changed)."""
    from cairn.automations.files import FileError, load_dir
    from cairn.automations.store import Automations

    try:
        definitions = load_dir(folder)
    except FileError as exc:
        click.echo(f"error: {len(exc.problems)} file(s) with problems, nothing applied", err=True)
        for name, message in exc.problems:
            click.echo(f"{folder / name}: {message}", err=True)
        sys.exit(1)
    with _store(data_dir, database_url, workspace) as (store, ws):
        results = Automations(store).apply(ws, definitions)
    if as_json:
        _print(results)
        return
    for r in results:
        click.echo(f"{r['result']:<9}  {r['name']}  (id {r['id']}, version {r['version']}, "
                   f"{r['state']})")  # fmt: skip


@automations_group.command("list")
@_options
def list_command(workspace: str, data_dir: Path | None, database_url: str | None,
                 as_json: bool) -> None:  # fmt: skip
    """Automations with their state, version and run counts."""
    from cairn.automations.store import Automations

    with _store(data_dir, database_url, workspace) as (store, ws):
        automations = Automations(store)
        found = [a.json(automations.counts(a.id)) for a in automations.all(ws)]
    if as_json:
        _print(found)
        return
    for a in found:
        c = a["counts"]
        click.echo(f"{a['id']:>4}  {a['state']:<7} v{a['version']:<3} {a['name']}  "
                   f"entered {c['entered']} converted {c['converted']} exited {c['exited']} "
                   f"failed {c['failed']} active {c['active']}")  # fmt: skip


@click.group("deliveries")
def deliveries_group() -> None:
    """Webhook deliveries: list them (--dead: the dead-letter list), replay one."""


@deliveries_group.command("list")
@click.option("--dead", is_flag=True, help="Only deliveries that gave up.")
@click.option("--limit", default=100, show_default=True)
@_options
def deliveries_list(dead: bool, limit: int, workspace: str, data_dir: Path | None,
                    database_url: str | None, as_json: bool) -> None:  # fmt: skip
    """Webhook deliveries, oldest first."""
    from cairn.automations.webhooks import list_deliveries

    with _store(data_dir, database_url, workspace) as (store, ws):
        found = list_deliveries(store, ws, status="dead" if dead else None, limit=limit)
    if as_json:
        _print(found)
        return
    for d in found:
        click.echo(f"{d['id']:>6}  {d['status']:<9} attempts {d['attempts']:<3} {d['url']}  "
                   f"{d['last_error'] or ''}".rstrip())  # fmt: skip


@deliveries_group.command("replay")
@click.argument("delivery_id", type=int)
@_options
def deliveries_replay(delivery_id: int, workspace: str, data_dir: Path | None,
                      database_url: str | None, as_json: bool) -> None:  # fmt: skip
    """Send dead delivery DELIVERY_ID again (the running server or worker sends it)."""
    from cairn.automations.webhooks import replay_delivery

    with _store(data_dir, database_url, workspace) as (store, ws):
        found = replay_delivery(store, ws, delivery_id)
    if as_json:
        _print(found)
        return
    click.echo(f"delivery {delivery_id} is pending again; it is sent within a second")
