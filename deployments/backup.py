"""Back up the control-plane database and the DuckDB store consistently; restore them elsewhere.

    python -m deployments.backup create [--out var/backups]    # -> var/backups/<UTC time>/
    python -m deployments.backup restore var/backups/<UTC time> # into an empty database, absent file

The Prefect database is ``PREFECT_API_DATABASE_CONNECTION_URL`` (the SQLite file
``$PREFECT_HOME/prefect.db`` without it, PREFECT_HOME defaulting to var/prefect): PostgreSQL goes
through ``pg_dump`` (custom format: one consistent snapshot while the servers keep running),
SQLite through its online backup API. The store is ``BTC_DB_PATH``, copied while holding the
writer lock and DuckDB's own file lock (btc_core's ``Store.connect``), so no load is half in it.
Restore never overwrites: the database must be empty and the DuckDB file absent. The backup holds
the key that decrypts Secret blocks: keep it as safe as the database (the folder is mode 700).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from btc_core.errors import BtcError, StoreBusy
from btc_core.files import write_atomically
from btc_core.settings import PROJECT_ROOT, Settings
from btc_core.store import Store, held
from deployments.stack import PREFECT_HOME

BACKUPS = PROJECT_ROOT / "var" / "backups"
MANIFEST = "manifest.json"
PG_DUMP = "prefect.pgdump"
SQLITE_COPY = "prefect.db"
STORE_COPY = "btc.duckdb"


class BackupError(BtcError):
    """A backup or restore that cannot go on, in one line."""


def database_url(env: dict[str, str] | os._Environ[str] = os.environ) -> URL:
    """The Prefect server's database, as the server itself would choose it."""
    raw = env.get("PREFECT_API_DATABASE_CONNECTION_URL") or env.get(
        "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    )
    if raw:
        return make_url(raw)
    home = Path(env.get("PREFECT_HOME") or PREFECT_HOME).expanduser()
    return make_url(f"sqlite+aiosqlite:///{home / 'prefect.db'}")


def pg_env(url: URL) -> dict[str, str]:
    """libpq's variables for ``url`` (the password never on a command line)."""
    env = dict(os.environ)
    parts = {
        "PGHOST": url.host,
        "PGPORT": url.port,
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
    }
    env.update({k: str(v) for k, v in parts.items() if v})
    return env


def run(args: list[str], env: dict[str, str], timeout_s: float = 3600) -> str:
    """Run a database tool; its stdout, or a BackupError with the last line it printed."""
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{args[0]} failed: {lines[-1] if lines else result.returncode}")
    return result.stdout


def is_postgres(url: URL) -> bool:
    return url.get_backend_name() == "postgresql"


def backup_database(url: URL, folder: Path) -> str:
    """Dump the Prefect database into ``folder``; return the file's name."""
    if is_postgres(url):
        run(["pg_dump", "--format=custom", f"--file={folder / PG_DUMP}"], pg_env(url))
        return PG_DUMP
    source = Path(url.database or "")
    if not source.is_file():
        raise BackupError(
            f"no Prefect database at {source}; set PREFECT_API_DATABASE_CONNECTION_URL"
        )
    with closing_sqlite(source) as src, closing_sqlite(folder / SQLITE_COPY) as dst:
        src.backup(dst)  # one consistent snapshot, even while the server writes
    return SQLITE_COPY


@contextmanager
def closing_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(path)
    try:
        yield con
    finally:
        con.close()


def backup_store(settings: Settings, target: Path) -> None:
    """Copy the DuckDB file (and its WAL, if any) while no writer can change it."""
    store = Store(settings.db_path, settings.lock_timeout_s)
    with store.connect():  # the writer lock, then DuckDB's own lock on the file
        shutil.copyfile(settings.db_path, target)
        wal = Path(f"{settings.db_path}.wal")
        if wal.exists():
            shutil.copyfile(wal, Path(f"{target}.wal"))


def create(out: Path, settings: Settings, url: URL) -> Path:
    """A new backup folder under ``out`` with the database, the store and a manifest; nothing
    is left behind when a part fails."""
    stamp = datetime.now(UTC)
    folder = out / stamp.strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, mode=0o700)
    try:
        manifest = fill(folder, settings, url)
    except BaseException:
        shutil.rmtree(folder)
        raise
    manifest = {"created": stamp.isoformat(), "prefect_version": version("prefect"), **manifest}
    write_atomically(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return folder


def fill(folder: Path, settings: Settings, url: URL) -> dict[str, object]:
    """Write the database and the store into ``folder``; return what the manifest says of them."""
    started = time.monotonic()
    manifest: dict[str, object] = {
        "database": url.get_backend_name(),
        "database_file": backup_database(url, folder),
        "database_seconds": round(time.monotonic() - started, 2),
    }
    if settings.store_url:
        print(
            "BTC_STORE_URL is a DuckLake: back up its catalog database and its data path (not here)"
        )
    elif settings.db_path.exists():
        started = time.monotonic()
        backup_store(settings, folder / STORE_COPY)
        manifest["store_file"] = STORE_COPY
        manifest["store_seconds"] = round(time.monotonic() - started, 2)
    else:
        print(f"no DuckDB store at {settings.db_path}: only the Prefect database is backed up")
    return manifest


def restore_database(folder: Path, manifest: dict, url: URL) -> None:
    """Load the dump into ``url``, which must be an empty database (or an absent SQLite file)."""
    if manifest["database"] != url.get_backend_name():
        raise BackupError(
            f"the backup is of a {manifest['database']} database; the target is "
            f"{url.get_backend_name()}: set PREFECT_API_DATABASE_CONNECTION_URL to a "
            f"{manifest['database']} one"
        )
    if is_postgres(url):
        env = pg_env(url)
        tables = run(
            ["psql", "-qAtc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"],
            env,
            timeout_s=60,
        )
        if tables.strip() != "0":
            raise BackupError(f"database {url.database} is not empty; restore into a new one")
        run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={url.database}",
                str(folder / PG_DUMP),
            ],
            env,
        )
        return
    target = Path(url.database or "")
    if target.exists():
        raise BackupError(f"{target} exists; move it away first (restore never overwrites)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing_sqlite(folder / SQLITE_COPY) as src, closing_sqlite(target) as dst:
        src.backup(dst)


def restore_store(source: Path, settings: Settings) -> None:
    """Put the store copy at ``BTC_DB_PATH`` (absent), holding the writer lock meanwhile."""
    target = settings.db_path
    if target.exists():
        raise BackupError(f"{target} exists; move it away first (restore never overwrites)")
    target.parent.mkdir(parents=True, exist_ok=True)

    def busy(who: str) -> StoreBusy:
        return StoreBusy(f"{target} is locked by {who}; stop the workers and try again")

    with held(Path(f"{target}.lock"), settings.lock_timeout_s, busy):
        for suffix in ("", ".wal"):
            copy = Path(f"{source}{suffix}")
            if copy.exists():
                partial = Path(f"{target}{suffix}.restoring")
                shutil.copyfile(copy, partial)
                partial.replace(Path(f"{target}{suffix}"))


def restore(folder: Path, settings: Settings, url: URL) -> dict[str, float]:
    """Restore the database, then the store; return how long each took."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"{folder} is not a backup (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    timings = {}
    started = time.monotonic()
    restore_database(folder, manifest, url)
    timings["database_seconds"] = round(time.monotonic() - started, 2)
    if manifest.get("store_file"):
        started = time.monotonic()
        restore_store(folder / manifest["store_file"], settings)
        timings["store_seconds"] = round(time.monotonic() - started, 2)
    if manifest["prefect_version"] != version("prefect"):
        print(
            f"the backup was taken with Prefect {manifest['prefect_version']}, this is "
            f"{version('prefect')}: migrate before starting servers (python -m deployments.ha migrate)"
        )
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("create", help="a new backup folder")
    make.add_argument("--out", type=Path, default=BACKUPS)
    back = sub.add_parser("restore", help="restore a backup folder")
    back.add_argument("folder", type=Path)
    args = parser.parse_args()
    try:
        settings, url = Settings.from_env(), database_url()
        if args.command == "create":
            folder = create(args.out, settings, url)
            manifest = json.loads((folder / MANIFEST).read_text())
            print(f"backup {folder}: {json.dumps(manifest)}")
        else:
            timings = restore(args.folder, settings, url)
            print(
                f"restored {args.folder} into {url.render_as_string(hide_password=True)}: "
                f"{json.dumps(timings)}"
            )
    except BtcError as exc:
        raise SystemExit(f"btc backup: {exc}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
