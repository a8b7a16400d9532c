"""The `cairn` command. Each command builds settings, calls the library, and prints."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from cairn.ids import parse_int
from cairn.settings import Settings, settings_markdown
from cairn.storage.base import Storage, storage_for
from cairn.workspaces import (
    DEFAULT_WORKSPACE,
    bootstrap,
    create_source,
    create_token,
    resolve_workspace,
)

__all__ = ["main"]

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CAIRN_DATA_DIR",
    help="Folder of the embedded SQLite database [env: CAIRN_DATA_DIR; default ./cairn-data].",
)
_database_url = click.option(
    "--database-url",
    envvar="CAIRN_DATABASE_URL",
    help="postgresql://... to use PostgreSQL [env: CAIRN_DATABASE_URL].",
)
_workspace = click.option("--workspace", default=DEFAULT_WORKSPACE, show_default=True)
_as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _settings(**overrides: Any) -> Settings:
    return Settings.load(overrides)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
@click.version_option(package_name="cairn")
def main() -> None:
    """Cairn: a Segment-compatible customer event platform."""


@main.command()
@click.option("--host", help="Address to listen on [default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [default 8000].")
@_data_dir
@_database_url
@click.option(
    "--pipeline/--no-pipeline",
    default=None,
    help="Run the pipeline in this process [env: CAIRN_PIPELINE; default on]. Turn off when "
    "`cairn worker` processes run it.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="Server processes sharing the port [env: CAIRN_WORKERS; default 0: one per core, at "
    "most 4].",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    database_url: str | None,
    pipeline: bool | None,
    workers: int | None,
) -> None:
    """Run the collector, the API, the UI and the pipeline (in one process or several)."""
    from cairn.app import build_app, open_runtime, run_pipeline_process
    from cairn.server import default_workers, refuse_taken_port, run_server

    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        pipeline=pipeline,
        workers=workers,
    )
    count = settings.workers or default_workers()
    if count > 1:
        try:
            refuse_taken_port(settings.host, settings.port)
        except OSError as exc:
            _fail(f"cannot listen on {settings.host}:{settings.port}: {exc}")
        # Migrate and bootstrap once, before the workers start; they open their own storage.
        storage = storage_for(settings)
        try:
            first = bootstrap(storage)
            _print_banner(settings, storage, first.token if first else None, count)
        finally:
            storage.close()
        try:
            pipeline_process = run_pipeline_process if settings.pipeline else None
            code = run_server(
                settings, count, lambda s, link: build_app(s, link=link), pipeline_process
            )
        except OSError as exc:
            _fail(f"cannot listen on {settings.host}:{settings.port}: {exc}")
            raise
        sys.exit(code)
    runtime = open_runtime(settings)
    first = bootstrap(runtime.storage)
    _print_banner(settings, runtime.storage, first.token if first else None, 1)
    sys.exit(run_server(settings, 1, lambda s, link: build_app(s, runtime)))


def _print_banner(settings: Settings, storage: Storage, token: str | None, workers: int) -> None:
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    workspace = storage.workspace_by_name(DEFAULT_WORKSPACE)
    sources = storage.list_sources(workspace.id) if workspace else []
    where = settings.database_url.split("@")[-1] if settings.database_url else settings.sqlite_path
    processes = f", {workers} worker processes" if workers > 1 else ""
    lines = [f"Cairn is starting on {base}  (database: {where}{processes})"]
    if sources:
        lines.append(f"  write key ({sources[0].name}):  {sources[0].write_key}")
    if token:
        lines.append(f"  admin token (shown once):  {token}")
    else:
        lines.append("  admin token: shown on first start; make another with `cairn tokens create`")
    lines += [
        f"  collector:   {base}/v1/batch",
        f"  debugger:    {base}/",
        f"  API docs:    {base}/docs",
    ]
    click.echo("\n".join(lines), err=False)
    sys.stdout.flush()


@main.group()
def sources() -> None:
    """Sources: where events come from, each with its write key."""


@sources.command("create")
@click.argument("name")
@_workspace
@_data_dir
@_database_url
@_as_json
def sources_create(
    name: str, workspace: str, data_dir: Path | None, database_url: str | None, as_json: bool
) -> None:
    """Create a source and print its write key."""
    storage = storage_for(_settings(data_dir=data_dir, database_url=database_url))
    try:
        ws = _workspace_or_bootstrap(storage, workspace)
        source = create_source(storage, ws, name)
    except Exception as exc:  # CairnError or ValueError: print, exit 1
        _fail(str(exc))
        raise
    finally:
        storage.close()
    record = {"id": source.id, "name": source.name, "write_key": source.write_key}
    click.echo(json.dumps(record) if as_json else f"{source.name}  {source.id}  {source.write_key}")


@sources.command("list")
@_workspace
@_data_dir
@_database_url
@_as_json
def sources_list(
    workspace: str, data_dir: Path | None, database_url: str | None, as_json: bool
) -> None:
    """List the sources of a workspace."""
    storage = storage_for(_settings(data_dir=data_dir, database_url=database_url))
    try:
        fresh = workspace == DEFAULT_WORKSPACE and not storage.list_workspaces()
        items = [] if fresh else storage.list_sources(resolve_workspace(storage, workspace).id)
    except Exception as exc:
        _fail(str(exc))
        raise
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps([{"id": s.id, "name": s.name, "write_key": s.write_key,
                                "enabled": s.enabled} for s in items]))  # fmt: skip
        return
    for s in items:
        click.echo(f"{s.name}  {s.id}  {s.write_key}{'' if s.enabled else '  (disabled)'}")


@sources.command("verify")
@click.argument("name")
@click.option(
    "--rotate", is_flag=True, help="Create (or replace) the identity secret; printed once."
)
@click.option(
    "--require/--no-require",
    default=None,
    help="Reject identify calls whose user_hash does not prove their userId.",
)
@_workspace
@_data_dir
@_database_url
@_as_json
def sources_verify(
    name: str,
    rotate: bool,
    require: bool | None,
    workspace: str,
    data_dir: Path | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Identity verification for source NAME: user_hash = hex(HMAC-SHA256(secret, userId))."""
    from cairn.workspaces import new_identity_secret

    storage = storage_for(_settings(data_dir=data_dir, database_url=database_url))
    secret = new_identity_secret() if rotate else None
    try:
        ws = resolve_workspace(storage, workspace)
        found = [s for s in storage.list_sources(ws.id) if s.name == name or s.id == name]
        if not found:
            _fail(f"no source {name!r} in workspace {workspace!r}")
        source = storage.set_source_identity(ws.id, found[0].id, secret=secret, require=require)
    except Exception as exc:  # CairnError: print, exit 1
        _fail(str(exc))
        raise
    finally:
        storage.close()
    record = {
        "id": source.id,
        "name": source.name,
        "require_user_hash": source.require_user_hash,
        "identity_secret_set": source.identity_secret is not None,
        **({"identity_secret": secret} if secret else {}),
    }
    if as_json:
        click.echo(json.dumps(record))
        return
    click.echo(
        f"{source.name}: identity secret {'set' if record['identity_secret_set'] else 'not set'}, "
        f"user_hash {'required' if source.require_user_hash else 'not required'}"
    )
    if secret:
        click.echo(f"  identity secret (shown once): {secret}")


@main.group()
def tokens() -> None:
    """Admin API tokens (stored hashed; shown once)."""


@tokens.command("create")
@_workspace
@click.option("--label", default="", help="A note to recognise the token by.")
@_data_dir
@_database_url
@_as_json
def tokens_create(
    workspace: str, label: str, data_dir: Path | None, database_url: str | None, as_json: bool
) -> None:
    """Create an admin token for a workspace and print it (the only time it is shown)."""
    storage = storage_for(_settings(data_dir=data_dir, database_url=database_url))
    try:
        ws = _workspace_or_bootstrap(storage, workspace)
        token, secret = create_token(storage, ws, label)
    except Exception as exc:
        _fail(str(exc))
        raise
    finally:
        storage.close()
    click.echo(json.dumps({"token": secret, "id": token.id}) if as_json else secret)


def _workspace_or_bootstrap(storage: Storage, name: str) -> Any:
    if name == DEFAULT_WORKSPACE and not storage.list_workspaces():
        storage.create_workspace(DEFAULT_WORKSPACE)
    return resolve_workspace(storage, name)


@main.command()
@_workspace
@_data_dir
@_database_url
@_as_json
@click.option("--from-start", is_flag=True, help="Print stored events first, then follow.")
@click.option("--interval", default=0.25, show_default=True, help="Seconds between polls.")
@click.option("--count", type=int, default=None, help="Stop after this many events.")
def tail(
    workspace: str,
    data_dir: Path | None,
    database_url: str | None,
    as_json: bool,
    from_start: bool,
    interval: float,
    count: int | None,
) -> None:
    """Follow events as they are accepted."""
    from cairn.web.api import event_json

    storage = storage_for(_settings(data_dir=data_dir, database_url=database_url))
    ws = resolve_workspace(storage, workspace)
    position = 0 if from_start else storage.last_seq()
    shown = 0
    try:
        while count is None or shown < count:
            batch = storage.read_log(position, 500)
            for entry in batch:
                position = entry.seq
                if entry.workspace_id != ws.id:
                    continue
                click.echo(_tail_line(event_json(entry), as_json))
                shown += 1
                if count is not None and shown >= count:
                    break
            if not batch:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        storage.close()


def _tail_line(message: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(message, ensure_ascii=False)
    who = message.get("userId") or message.get("anonymousId") or "-"
    what = message.get("event") or message.get("name") or ""
    return f"{message.get('timestamp', '')}  {message['type']:<8}  {who}  {what}".rstrip()


def _pipeline(data_dir: Path | None, database_url: str | None) -> Any:
    from cairn.pipeline.runner import Pipeline
    from cairn.storage.sql import SQLStorage

    settings = _settings(data_dir=data_dir, database_url=database_url)
    storage = storage_for(settings)
    assert isinstance(storage, SQLStorage)
    return Pipeline.from_settings(storage, settings)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@main.command()
@_data_dir
@_database_url
@click.option("--lease-seconds", default=10.0, show_default=True, help="Lease length.")
def worker(data_dir: Path | None, database_url: str | None, lease_seconds: float) -> None:
    """Run the pipeline alone (beside `cairn serve --no-pipeline`, or as a standby).

    Several workers may run against one PostgreSQL database: one holds the pipeline's lease and
    processes, the others wait and take over within a lease length if it stops.
    """
    import signal
    import threading

    from cairn.app import open_pipeline_worker

    settings = _settings(data_dir=data_dir, database_url=database_url)
    worker = open_pipeline_worker(settings, lease_seconds=lease_seconds)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"cairn worker {worker.runner.holder}: following the log", err=False)
    sys.stdout.flush()
    worker.run(stop)


@main.group("pipeline")
def pipeline_group() -> None:
    """Inspect the pipeline, replay dead letters, rewind the cursor."""


@pipeline_group.command("status")
@_data_dir
@_database_url
def pipeline_status(data_dir: Path | None, database_url: str | None) -> None:
    """Cursor, lag and dead letters, as JSON."""
    import msgspec

    pipeline = _pipeline(data_dir, database_url)
    try:
        _echo_json(msgspec.to_builtins(pipeline.status()))
    finally:
        pipeline.storage.close()


@pipeline_group.command("dead-letters")
@_data_dir
@_database_url
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved ones.")
def pipeline_dead_letters(
    data_dir: Path | None, database_url: str | None, include_resolved: bool
) -> None:
    """List dead letters (events a stage failed on), as JSON lines."""
    import msgspec

    pipeline = _pipeline(data_dir, database_url)
    try:
        for letter in pipeline.dead_letters(None, include_resolved=include_resolved, limit=10_000):
            click.echo(msgspec.json.encode(letter).decode())
    finally:
        pipeline.storage.close()


@pipeline_group.command("replay")
@_data_dir
@_database_url
@click.option("--id", "ids", type=int, multiple=True, help="Only this dead letter (repeatable).")
def pipeline_replay(data_dir: Path | None, database_url: str | None, ids: tuple[int, ...]) -> None:
    """Run open dead letters through the stages again (after fixing what made them fail)."""
    from cairn.errors import CairnError

    pipeline = _pipeline(data_dir, database_url)
    try:
        _echo_json(pipeline.replay_dead_letters(None, list(ids) or None))
    except CairnError as exc:
        _fail(exc.message)
    finally:
        pipeline.storage.close()


@pipeline_group.command("rewind")
@click.argument("position", type=int)
@_data_dir
@_database_url
def pipeline_rewind(position: int, data_dir: Path | None, database_url: str | None) -> None:
    """Move the cursor back to POSITION (a sequence number; 0 = the start). Safe: events already
    applied are skipped, so the state after catching up is the same."""
    pipeline = _pipeline(data_dir, database_url)
    try:
        pipeline.store.rewind(position)
        click.echo(f"pipeline cursor set to {max(position, 0)}")
    finally:
        pipeline.storage.close()


@main.command()
@click.argument("query")
@_workspace
@_data_dir
@_database_url
@click.option("--csv", "as_csv", is_flag=True, help="Every match as CSV.")
@click.option("--explain", is_flag=True, help="Show the SQL and its parameters, run nothing.")
@click.option("--accounts", is_flag=True, help="Find accounts instead of people.")
@click.option("--limit", default=50, show_default=True, help="Matches to list (without --csv).")
@_as_json
def find(
    query: str,
    workspace: str,
    data_dir: Path | None,
    database_url: str | None,
    as_csv: bool,
    explain: bool,
    accounts: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Find people (or accounts) matching QUERY, the finder's text form (docs/finder.md), e.g.

    cairn find 'plan = "pro" and did "Order Completed" at least 3 times in last 30 days'
    """
    from cairn.errors import CairnError
    from cairn.finder.search import Search
    from cairn.finder.text import parse

    pipeline = _pipeline(data_dir, database_url)
    try:
        ws = resolve_workspace(pipeline.storage, workspace)
        search = Search(pipeline.storage, ws.id, parse(query), accounts=accounts)
        if explain:
            plan = search.explain()
            click.echo(plan["sql"])
            click.echo(json.dumps(plan["params"], ensure_ascii=False, default=str))
            return
        if as_csv:
            for chunk in search.csv():
                click.echo(chunk, nl=False)
            return
        page = search.page(max(1, min(limit, 1000)))
        if as_json:
            _echo_json(page)
            return
        key = "group_id" if accounts else "id"
        for item in page["data"]:
            traits = json.dumps(item["traits"], ensure_ascii=False)
            click.echo(f"{item[key]}  last seen {item['last_seen']}  {traits}")
        click.echo(f"{page['total']} match{'es' if page['total'] != 1 else ''}", err=True)
    except CairnError as exc:
        _fail(exc.message)
    finally:
        pipeline.storage.close()


@main.group()
def people() -> None:
    """Show people, undo merges."""


@people.command("show")
@click.argument("person")
@_workspace
@_data_dir
@_database_url
@_as_json
@click.option("--limit", default=20, show_default=True, help="Timeline entries to show.")
def people_show(
    person: str,
    workspace: str,
    data_dir: Path | None,
    database_url: str | None,
    as_json: bool,
    limit: int,
) -> None:
    """A profile and its latest timeline. PERSON is a person id, or kind:value
    (user_id:42, anonymous_id:..., email:...)."""
    from cairn.errors import CairnError
    from cairn.profiles import read
    from cairn.timeline import TimelineQuery, person_timeline

    pipeline = _pipeline(data_dir, database_url)
    store = pipeline.store
    try:
        ws = resolve_workspace(pipeline.storage, workspace)
        kind, sep, value = person.partition(":")
        if sep:
            person_id = read.lookup(store, pipeline.rules, ws.id, {kind: value})
        elif (number := parse_int(person)) is not None:
            person_id = number
        else:
            raise click.BadParameter("a person id or kind:value", param_hint="PERSON")
        profile = read.person_json(
            store, ws.id, person_id, max_identifiers=pipeline.rules.max_identifiers
        )
        timeline = person_timeline(store, profile["id"], TimelineQuery(limit=limit))
        if as_json:
            _echo_json({"person": profile, "timeline": timeline["data"]})
            return
        click.echo(_profile_text(profile, timeline["data"]))
    except CairnError as exc:
        _fail(exc.message)
    finally:
        pipeline.storage.close()


def _profile_text(profile: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    ids = ", ".join(f"{i['kind']}={i['value']}" for i in profile["identifiers"])
    lines = [
        f"person {profile['id']}  ({ids})",
        f"  first seen {profile['first_seen']}   last seen {profile['last_seen']}   "
        f"events {profile['events']}   revenue {profile['revenue']:g}",
    ]
    for name, value in sorted(profile["traits"].items()):
        lines.append(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
    for account in profile["accounts"]:
        lines.append(f"  account {account['group_id']} (joined {account['joined_at']})")
    for merge in profile["merged_from"]:
        lines.append(
            f"  merged from person {merge['person_id']} at {merge['at']} ({merge['reason']}, "
            f"merge {merge['merge_id']})"
        )
    lines.append("timeline:")
    for item in timeline:
        if item["kind"] == "event":
            what = item["event"] or item["message"].get("name") or ""
            lines.append(f"  {item['at']}  {item['type']:<8}  {what}".rstrip())
        else:
            lines.append(f"  {item['at']}  {item['kind']:<8}  {json.dumps(item['data'])}")
    return "\n".join(lines)


@people.command("unmerge")
@click.argument("person_id", type=int)
@click.argument("merge_id")
@_workspace
@_data_dir
@_database_url
def people_unmerge(
    person_id: int, merge_id: str, workspace: str, data_dir: Path | None, database_url: str | None
) -> None:
    """Undo merge MERGE_ID listed on PERSON_ID's merged_from."""
    from cairn.errors import CairnError
    from cairn.identity.unmerge import unmerge

    pipeline = _pipeline(data_dir, database_url)
    try:
        ws = resolve_workspace(pipeline.storage, workspace)
        _echo_json(unmerge(pipeline.store, ws.id, person_id, merge_id))
    except CairnError as exc:
        _fail(exc.message)
    finally:
        pipeline.storage.close()


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print docs/settings.md.")
def settings_command(markdown: bool) -> None:
    """Show every setting (name, environment variable, default)."""
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    current = Settings.load()
    for name in current.__dataclass_fields__:
        if name != "extra":
            click.echo(f"{name} = {getattr(current, name)!r}")


def _add_automations() -> None:
    from cairn.automations.cli import automations_group, deliveries_group

    main.add_command(automations_group)
    main.add_command(deliveries_group)


_add_automations()


# `cairn lint`, `cairn plans init|apply` (src/cairn/plans/cli.py)
from cairn.plans import cli as plans_cli  # noqa: E402 (attached after the main group exists)

plans_cli.attach(main)
