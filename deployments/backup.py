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
from typing import Literal

import duckdb
from pydantic import BaseModel, ValidationError, model_validator
from sqlalchemy.engine import URL, make_url

from btc_core.errors import BtcError, StoreBusy
from btc_core.files import replacing, special_kind, write_atomically
from btc_core.settings import PROJECT_ROOT, Settings
from btc_core.store import Store, foreign_schema, held

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
    from deployments.stack import PREFECT_HOME  # here: the stack imports Prefect (~1.5 s)

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
def closing_sqlite(path: Path | str, uri: bool = False) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(path, uri=uri)
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


class Manifest(BaseModel):
    """What ``manifest.json`` must say (extra keys, the timings, are ignored)."""

    created: str
    prefect_version: str
    database: Literal["sqlite", "postgresql"]
    database_file: Literal["prefect.db", "prefect.pgdump"]
    store_file: Literal["btc.duckdb"] | None = None

    @model_validator(mode="after")
    def _file_of_its_kind(self) -> Manifest:
        if self.database_file != (SQLITE_COPY if self.database == "sqlite" else PG_DUMP):
            raise ValueError(f"a {self.database} backup is not in {self.database_file}")
        return self


def read_manifest(folder: Path) -> Manifest:
    """The folder's manifest, checked; BackupError if it is missing, unreadable or wrong."""
    path = folder / MANIFEST
    if special_kind(path) or not path.is_file():
        raise BackupError(f"{folder} is not a backup (no {MANIFEST} file)")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the file"
        raise BackupError(f"{path} is not a valid manifest ({where}: {first['msg']})") from None


def backup_file(folder: Path, name: str) -> Path:
    """``folder/name``, a non-empty regular file; BackupError naming what is wrong."""
    path = folder / name
    if special_kind(path) or not path.is_file() or path.stat().st_size == 0:
        raise BackupError(f"the backup is incomplete: {path} is missing, empty or not a file")
    return path


def check_sqlite(path: Path) -> None:
    """A complete SQLite copy of a Prefect database: ``PRAGMA integrity_check`` says ok and it
    has Prefect's tables (an empty database is not a backup)."""
    try:
        with closing_sqlite(f"{path.resolve().as_uri()}?mode=ro", uri=True) as con:
            (verdict,) = con.execute("PRAGMA integrity_check(1)").fetchone() or ("no answer",)
            tables = con.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'"
            ).fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a usable SQLite database: {exc}") from None
    if verdict != "ok":
        raise BackupError(f"{path} is damaged (PRAGMA integrity_check failed)")
    if tables != (1,):
        raise BackupError(f"{path} holds no Prefect database (no alembic_version table)")


def check_pg_dump(path: Path) -> None:
    """A complete ``pg_dump --format=custom`` archive: ``pg_restore --list`` reads its table of
    contents, which must include Prefect's tables' data."""
    listing = run(["pg_restore", "--list", str(path)], dict(os.environ), timeout_s=60)
    if "TABLE DATA public alembic_version" not in listing:
        raise BackupError(f"{path} holds no Prefect database (no alembic_version data)")


def check_store(path: Path) -> None:
    """A complete DuckDB copy of a btc store (opened read-only, its schema recognised)."""
    wal = Path(f"{path}.wal")
    if wal.exists():
        backup_file(wal.parent, wal.name)
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            why = foreign_schema(con, empty_ok=False)
    except duckdb.Error as exc:
        raise BackupError(f"{path} is not a usable DuckDB file ({type(exc).__name__})") from None
    if why:
        raise BackupError(f"{path} is not a btc store ({why})")


def check_backup(folder: Path) -> Manifest:
    """Everything a restore needs from ``folder``, checked before any target is touched."""
    manifest = read_manifest(folder)
    database = backup_file(folder, manifest.database_file)
    (check_sqlite if manifest.database == "sqlite" else check_pg_dump)(database)
    if manifest.store_file:
        check_store(backup_file(folder, manifest.store_file))
    return manifest


def check_targets(manifest: Manifest, settings: Settings, url: URL) -> None:
    """The targets are free: the database empty or absent, the DuckDB file absent."""
    if manifest.database != url.get_backend_name():
        raise BackupError(
            f"the backup is of a {manifest.database} database; the target is "
            f"{url.get_backend_name()}: set PREFECT_API_DATABASE_CONNECTION_URL to a "
            f"{manifest.database} one"
        )
    targets = [settings.db_path] if manifest.store_file else []
    if is_postgres(url):
        tables = run(
            ["psql", "-qAtc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"],
            pg_env(url),
            timeout_s=60,
        )
        if tables.strip() != "0":
            raise BackupError(f"database {url.database} is not empty; restore into a new one")
    else:
        targets.append(Path(url.database or ""))
    for target in targets:
        if target.exists() or target.is_symlink():
            raise BackupError(f"{target} exists; move it away first (restore never overwrites)")


def restore_database(folder: Path, manifest: Manifest, url: URL) -> None:
    """Load the dump into ``url`` (checked empty), or copy the SQLite file into a temporary
    name beside the target and rename it."""
    if is_postgres(url):
        run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={url.database}",
                str(folder / PG_DUMP),
            ],
            pg_env(url),
        )
        return
    with (  # the connections close before the rename
        replacing(Path(url.database or ""), mode=0o600) as partial,
        closing_sqlite(folder / SQLITE_COPY) as src,
        closing_sqlite(partial) as dst,
    ):
        src.backup(dst)


def restore_store(source: Path, settings: Settings) -> None:
    """Put the store copy (and its WAL) at ``BTC_DB_PATH``, each through a temporary name,
    holding the writer lock meanwhile."""
    target = settings.db_path

    def busy(who: str) -> StoreBusy:
        return StoreBusy(f"{target} is locked by {who}; stop the workers and try again")

    with held(Path(f"{target}.lock"), settings.lock_timeout_s, busy):
        for suffix in ("", ".wal"):
            copy = Path(f"{source}{suffix}")
            if copy.exists():
                with replacing(Path(f"{target}{suffix}")) as partial:
                    shutil.copyfile(copy, partial)


def restore(folder: Path, settings: Settings, url: URL) -> dict[str, float]:
    """Check the backup and the targets, then restore the database and the store; return how
    long each took."""
    manifest = check_backup(folder)
    check_targets(manifest, settings, url)
    timings = {}
    started = time.monotonic()
    restore_database(folder, manifest, url)
    timings["database_seconds"] = round(time.monotonic() - started, 2)
    if manifest.store_file:
        started = time.monotonic()
        restore_store(folder / manifest.store_file, settings)
        timings["store_seconds"] = round(time.monotonic() - started, 2)
    if manifest.prefect_version != version("prefect"):
        print(
            f"the backup was taken with Prefect {manifest.prefect_version}, this is "
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
    except OSError as exc:  # the system refused something the checks did not foresee
        where = f": {exc.filename}" if exc.filename else ""
        raise SystemExit(f"btc backup: {exc.strerror or exc}{where}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
