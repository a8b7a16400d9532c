"""Every setting Cairn reads, declared once as data, read once at start and passed down.

`docs/settings.md` is generated from `SETTINGS` (`cairn settings --markdown`) and a test fails when the
two disagree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS", "Setting", "Settings", "settings_markdown"]


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        return "CAIRN_" + self.name.upper()

    def parse(self, raw: str) -> Any:
        if self.type is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if self.type is Path:
            return Path(raw)
        return self.type(raw)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "127.0.0.1", "Address `cairn serve` listens on."),
    Setting("port", int, 8000, "Port `cairn serve` listens on."),
    Setting(
        "workers",
        int,
        0,
        "Processes `cairn serve` runs, sharing the port (SO_REUSEPORT), each with its own log "
        "writer; 0 means one per core, at most 4. With more than one, the pipeline runs in a "
        "process of its own beside them; with 1, in a thread of the one process.",
    ),
    Setting("data_dir", Path, Path("cairn-data"), "Folder for the embedded SQLite database."),
    Setting(
        "database_url",
        str,
        "",
        "`postgresql://...` to use PostgreSQL; empty means SQLite in `data_dir`.",
    ),
    Setting(
        "public_url",
        str,
        "",
        "Public base URL of this server (e.g. `https://cairn.example.com`), used in the analytics.js "
        "settings answer; empty means the request's own host.",
    ),
    Setting(
        "max_request_bytes",
        int,
        500 * 1024,
        "Largest request body, after gzip decoding, the collector accepts (413 above).",
    ),
    Setting(
        "max_message_bytes", int, 32 * 1024, "Largest single message, as stored (rejected above)."
    ),
    Setting(
        "max_batch_messages", int, 2500, "Messages accepted from one batch; the rest rejected."
    ),
    Setting(
        "max_pending_events",
        int,
        200_000,
        "Events accepted into memory but not yet committed before the collector answers 429.",
    ),
    Setting("group_commit_rows", int, 20_000, "Most events the writer commits in one transaction."),
    Setting(
        "sqlite_synchronous",
        str,
        "FULL",
        "SQLite `synchronous` pragma. FULL fsyncs the WAL on every group commit, so a 200 survives "
        "power loss; NORMAL survives a process crash but not a power cut.",
    ),
    Setting("sqlite_cache_mb", int, 64, "SQLite page cache per connection, in MiB."),
    Setting(
        "trusted_proxy_header",
        str,
        "",
        "Header carrying the client address when Cairn runs behind a proxy "
        "(e.g. `X-Forwarded-For`); empty means the socket's peer address.",
    ),
    Setting(
        "source_cache_seconds",
        float,
        5.0,
        "How long the collector caches a write key lookup (a disabled source stops within this time).",
    ),
    Setting("log_level", str, "info", "Server log level."),
    Setting(
        "pipeline",
        bool,
        True,
        "Run the pipeline (identity, profiles, accounts, timeline) inside `cairn serve`. Turn off "
        "when separate `cairn worker` processes run it.",
    ),
    Setting(
        "pipeline_batch", int, 20000, "Most log entries the pipeline processes per transaction."
    ),
    Setting(
        "pipeline_cache_persons",
        int,
        50000,
        "Persons (with their identifiers) the pipeline keeps in memory between batches so it need "
        "not read them again: about 1 KB each; 0 turns the cache off.",
    ),
    Setting(
        "identity_max_identifiers",
        int,
        100,
        "Most identifiers one person can have. Past it new ids are not linked and merges that "
        "would exceed it are refused (counted on the person as `identifiers_refused`).",
    ),
    Setting(
        "identity_junk_ids",
        str,
        "",
        "Extra comma-separated ids never linked to anyone, on top of the built-in list "
        "(`null`, `undefined`, `0`, `anonymous`, `guest`, `[object Object]`, ...; "
        "docs/people.md). Compared trimmed and case-insensitively.",
    ),
    Setting(
        "identity_email",
        bool,
        False,
        "Treat `traits.email` of identify calls as an identifier (links and merges persons by "
        "email, lower-cased).",
    ),
    Setting(
        "webhook_allow_private_targets",
        bool,
        False,
        "Let automation webhooks call loopback, private and link-local addresses (refused by "
        "default, redirects included; docs/automations.md).",
    ),
    Setting(
        "webhook_timeout_seconds", float, 10.0, "How long one webhook attempt may take in all."
    ),
    Setting(
        "webhook_retry_horizon_seconds",
        int,
        86400,
        "How long a failing webhook is retried (backoff with jitter) before it goes to the "
        "dead-letter list.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 0
    data_dir: Path = Path("cairn-data")
    database_url: str = ""
    public_url: str = ""
    max_request_bytes: int = 500 * 1024
    max_message_bytes: int = 32 * 1024
    max_batch_messages: int = 2500
    max_pending_events: int = 200_000
    group_commit_rows: int = 20_000
    sqlite_synchronous: str = "FULL"
    sqlite_cache_mb: int = 64
    trusted_proxy_header: str = ""
    source_cache_seconds: float = 5.0
    log_level: str = "info"
    pipeline: bool = True
    pipeline_batch: int = 20000
    pipeline_cache_persons: int = 50000
    identity_max_identifiers: int = 100
    identity_junk_ids: str = ""
    identity_email: bool = False
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_retry_horizon_seconds: int = 86400
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then `CAIRN_*` environment variables, then explicit overrides (CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.env in environ and environ[setting.env] != "":
                values[setting.name] = setting.parse(environ[setting.env])
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            if name not in _BY_NAME:
                raise KeyError(f"unknown setting {name!r}")
            values[name] = value
        return cls(**values)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "cairn.db"

    @property
    def database(self) -> str:
        """The database URL in effect: PostgreSQL when configured, else the SQLite file."""
        return self.database_url or f"sqlite:///{self.sqlite_path}"


def _check_table_matches_fields() -> None:
    declared = {f.name for f in fields(Settings)} - {"extra"}
    assert declared == set(_BY_NAME), declared ^ set(_BY_NAME)
    for f in fields(Settings):
        if f.name in _BY_NAME:
            assert f.default == _BY_NAME[f.name].default, f.name


_check_table_matches_fields()


def settings_markdown() -> str:
    lines = [
        "# Settings",
        "",
        "Every setting has a default, an environment variable and, for `cairn serve`, often a flag.",
        "Precedence: flag, then environment variable, then default. Generated from",
        "`src/cairn/settings.py` by `cairn settings --markdown`; a test keeps this page in step.",
        "",
        "| name | environment variable | type | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default != "" else "(empty)"
        lines.append(f"| `{s.name}` | `{s.env}` | {s.type.__name__} | {default} | {s.help} |")
    return "\n".join(lines) + "\n"
