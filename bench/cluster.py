"""The benchmarks' own PostgreSQL: a cluster with the production settings of docs/postgresql.md.

The machine's PostgreSQL (127.0.0.1:5432) is configured for the test suite (`autovacuum = off`,
the default 128 MB of `shared_buffers`), which no production server runs with. `--tuned-postgres`
(bench/ingest.py, bench/pipeline.py, bench/finder.py) runs the PostgreSQL rows on a cluster of
their own instead: `cairnbench`, port 5433, made with Debian's `pg_createcluster` the first time it
is asked for, its settings written to its `conf.d/` (and the cluster restarted) whenever they
differ from `SETTINGS`, started when it is down. Nothing else uses it: `make test` and `.ci/run`
know only the machine's own cluster. `python bench/cluster.py` makes and starts it and prints its
URL; `--stop` stops it; `--drop` removes it with its data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["PORT", "SETTINGS", "tuned_postgres"]

VERSION = "15"
NAME = "cairnbench"
PORT = 5433
URL = f"postgresql://postgres@127.0.0.1:{PORT}/postgres"
# docs/postgresql.md explains each; sized for this machine (23 GB of RAM, 2 cores, a virtio disk)
# and a working set of a few GB.
SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "12GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "512MB",
    "autovacuum": "on",
    "wal_compression": "lz4",
    "wal_buffers": "64MB",
    "max_wal_size": "8GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "synchronous_commit": "on",
}
_CONF = Path("/etc/postgresql") / VERSION / NAME / "conf.d" / "50-cairn.conf"


def tuned_postgres() -> str:
    """The cluster's URL (on its `postgres` database), once it runs with `SETTINGS`."""
    if not shutil.which("pg_createcluster"):
        raise RuntimeError("--tuned-postgres needs Debian's postgresql-common (pg_createcluster)")
    if not _exists():
        print(f"creating the PostgreSQL cluster {VERSION}/{NAME} on port {PORT}", flush=True)
        _run("pg_createcluster", VERSION, NAME, "-p", str(PORT), "--start-conf=manual",
             "--", "--auth-local=trust", "--auth-host=trust")  # fmt: skip
    changed = _write_settings()
    if _online() and changed:
        print(f"restarting {VERSION}/{NAME} with new settings", flush=True)
        _run("pg_ctlcluster", "--skip-systemctl-redirect", VERSION, NAME, "restart")
    elif not _online():
        _run("pg_ctlcluster", "--skip-systemctl-redirect", VERSION, NAME, "start")
    _wait_ready()
    return URL


def _exists() -> bool:
    return (Path("/etc/postgresql") / VERSION / NAME / "postgresql.conf").exists()


def _online() -> bool:
    found = subprocess.run(["pg_lsclusters", "--no-header", VERSION, NAME],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return "online" in found.stdout


def _write_settings() -> bool:
    """`SETTINGS` into the cluster's conf.d; whether the file changed."""
    text = "# written by bench/cluster.py (docs/postgresql.md)\n" + "".join(
        f"{name} = '{value}'\n" for name, value in SETTINGS.items()
    )
    if _CONF.exists() and _CONF.read_text() == text:
        return False
    _CONF.write_text(text)
    if os.geteuid() == 0:
        shutil.chown(_CONF, "postgres", "postgres")
    return True


def _wait_ready(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PORT)],
                         check=False).returncode != 0:  # fmt: skip
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL {VERSION}/{NAME} did not start on port {PORT}")
        time.sleep(0.2)


def _run(*command: str) -> None:
    """A postgresql-common command; as root they run the server as its owner themselves. The
    server started here inherits no descriptor of this process (`subprocess` closes them): a
    benchmark run under `flock` leaves no server holding its lock. (A shell script under `flock`
    that restarts the cluster itself must use `flock -o`.)"""
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, close_fds=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stop", action="store_true", help="stop the cluster")
    parser.add_argument("--drop", action="store_true", help="stop and remove it, with its data")
    args = parser.parse_args()
    if args.drop or args.stop:
        if _exists():
            action = ["pg_dropcluster", "--stop"] if args.drop else ["pg_ctlcluster", "--force"]
            command = [*action, VERSION, NAME] + ([] if args.drop else ["stop"])
            subprocess.run(command, check=False)
        return
    print(tuned_postgres())


if __name__ == "__main__":
    main()
