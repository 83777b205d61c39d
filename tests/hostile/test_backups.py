"""Hostile backups (issue #31, row 12): ``python -m deployments.backup restore`` of a folder that
``create`` made and something then spoiled. Each must end in one ``btc backup:`` line and exit
1, with no traceback, no hang, nothing created at the targets and the folder unchanged; the
good folder restores, also after a failed attempt (a 0-byte target used to block the retry)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from btc_core.cli import main
from btc_core.settings import PROJECT_ROOT
from btc_core.store import Store
from deployments.postgres import postgres_available, postgres_url, scratch_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]  # a hang fails its case

Spoil = Callable[[Path], object]  # changes the copy of a good backup folder


def run_backup(*args: str, home: Path, store: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m deployments.backup ...`` with the targets ``home``/prefect.db and ``store``."""
    clean = {k: v for k, v in os.environ.items() if "DATABASE_CONNECTION_URL" not in k}
    return subprocess.run(
        [sys.executable, "-m", "deployments.backup", *args],
        env={
            **clean,
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "BTC_DB_PATH": str(store),
            **env,
        },
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def sqlite_file(path: Path, tables: bool = True) -> None:
    """A SQLite database shaped like Prefect's enough for a backup: alembic_version and rows
    over many pages (``tables=False``: another program's database)."""
    with sqlite3.connect(path) as con:
        if not tables:
            con.execute("CREATE TABLE notes (x TEXT)")
        else:
            con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            con.execute("INSERT INTO alembic_version VALUES ('3c841a1800a1')")
            con.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, message TEXT)")
            con.executemany("INSERT INTO log (message) VALUES (?)", [("x" * 200,)] * 2000)
    con.close()


@pytest.fixture(scope="module")
def good_backup(tmp_path_factory) -> Path:
    """A backup ``create`` made of a SQLite Prefect database and a btc store."""
    src = tmp_path_factory.mktemp("source")
    (src / "home").mkdir()
    sqlite_file(src / "home" / "prefect.db")
    assert main(["run", "--db", str(src / "btc.duckdb"), "--notify", "none"]) == 0
    made = run_backup(
        "create", "--out", str(src / "backups"), home=src / "home", store=src / "btc.duckdb"
    )
    assert made.returncode == 0, made.stderr
    return next((src / "backups").iterdir())


def manifest(**change: object) -> Spoil:
    def edit(folder: Path) -> None:
        data = json.loads((folder / "manifest.json").read_text())
        data.update(change)
        (folder / "manifest.json").write_text(
            json.dumps({k: v for k, v in data.items() if v != ...})
        )

    return edit


def content(name: str, data: bytes) -> Spoil:
    return lambda folder: (folder / name).write_bytes(data)


def truncate(name: str, size: int | float) -> Spoil:
    def cut(folder: Path) -> None:
        path = folder / name
        os.truncate(path, int(size * path.stat().st_size) if isinstance(size, float) else size)

    return cut


def replace(name: str, make: Callable[[Path], object]) -> Spoil:
    def swap(folder: Path) -> None:
        (folder / name).unlink()
        make(folder / name)

    return swap


def flip_page(name: str, page: int) -> Spoil:
    """Zero bytes in the middle of page ``page`` (4 KiB pages)."""

    def flip(folder: Path) -> None:
        with (folder / name).open("r+b") as fh:
            fh.seek(page * 4096 + 100)
            fh.write(b"\0" * 3000)

    return flip


def foreign_duckdb(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE customers (id INTEGER); INSERT INTO customers VALUES (1)")


BACKUPS: dict[str, tuple[Spoil, str]] = {
    "prefect.db truncated to one page": (truncate("prefect.db", 4096), "is not a usable SQLite database"),
    "prefect.db truncated to half": (truncate("prefect.db", 0.5), "is not a usable SQLite database"),
    "prefect.db empty": (truncate("prefect.db", 0), "the backup is incomplete"),
    "no prefect.db": (lambda f: (f / "prefect.db").unlink(), "the backup is incomplete"),
    "prefect.db another program's SQLite database": (replace("prefect.db", lambda p: sqlite_file(p, tables=False)), "holds no Prefect database"),
    "prefect.db with a zeroed page": (flip_page("prefect.db", 3), "prefect.db"),
    "prefect.db a FIFO": (replace("prefect.db", os.mkfifo), "the backup is incomplete"),
    "prefect.db a symlink to /dev/zero": (replace("prefect.db", lambda p: p.symlink_to("/dev/zero")), "the backup is incomplete"),
    "prefect.db a folder": (replace("prefect.db", Path.mkdir), "the backup is incomplete"),
    "prefect.db a text file": (content("prefect.db", b"not a database\n" * 500), "is not a usable SQLite database"),
    "no manifest": (lambda f: (f / "manifest.json").unlink(), "is not a backup (no manifest.json"),
    "manifest empty": (content("manifest.json", b""), "is not a valid manifest"),
    "manifest truncated JSON": (content("manifest.json", b'{"database": "sqlite",'), "is not a valid manifest"),
    "manifest a list": (content("manifest.json", b"[1, 2]"), "is not a valid manifest"),
    "manifest in UTF-16": (lambda f: (f / "manifest.json").write_text((f / "manifest.json").read_text(), "utf-16"), "is not a valid manifest"),
    "manifest a FIFO": (replace("manifest.json", os.mkfifo), "is not a backup (no manifest.json"),
    "manifest a symlink to /dev/zero": (replace("manifest.json", lambda p: p.symlink_to("/dev/zero")), "is not a backup"),
    "manifest without database": (manifest(database=...), "database: Field required"),
    "manifest without created": (manifest(created=...), "created: Field required"),
    "manifest database mysql": (manifest(database="mysql"), "is not a valid manifest (database"),
    "manifest database a number": (manifest(database=5), "is not a valid manifest (database"),
    "manifest database_file ../ outside": (manifest(database_file="../../../etc/passwd"), "is not a valid manifest (database_file"),
    "manifest store_file ../ outside": (manifest(store_file="../../../../etc/hostname"), "is not a valid manifest (store_file"),
    "manifest store_file absolute": (manifest(store_file="/etc/hostname"), "is not a valid manifest (store_file"),
    "manifest sqlite in a pg_dump file": (manifest(database_file="prefect.pgdump"), "a sqlite backup is not in prefect.pgdump"),
    "no btc.duckdb": (lambda f: (f / "btc.duckdb").unlink(), "the backup is incomplete"),
    "btc.duckdb truncated": (truncate("btc.duckdb", 10_000), "is not a usable DuckDB file"),
    "btc.duckdb another program's database": (replace("btc.duckdb", foreign_duckdb), "is not a btc store"),
    "btc.duckdb a FIFO": (replace("btc.duckdb", os.mkfifo), "the backup is incomplete"),
    "btc.duckdb a symlink to a text file": (replace("btc.duckdb", lambda p: p.symlink_to("/etc/hostname")), "is not a usable DuckDB file"),
    "btc.duckdb.wal a FIFO": (lambda f: os.mkfifo(f / "btc.duckdb.wal"), "the backup is incomplete"),
}  # fmt: skip


def snapshot(folder: Path) -> dict[str, object]:
    """Name -> bytes of each regular file, or the link or file type of anything else (never
    read: a FIFO would block, /dev/zero never ends)."""
    found: dict[str, object] = {}
    for path in sorted(folder.iterdir()):
        mode = path.lstat().st_mode
        found[path.name] = (
            path.read_bytes()
            if stat.S_ISREG(mode)
            else os.readlink(path)
            if stat.S_ISLNK(mode)
            else stat.S_IFMT(mode)
        )
    return found


def copy_of(backup: Path, tmp: Path) -> Path:
    folder = tmp / "backup"
    folder.mkdir()
    for path in backup.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def targets(tmp: Path) -> tuple[Path, Path]:
    (tmp / "home").mkdir(exist_ok=True)
    return tmp / "home", tmp / "store" / "btc.duckdb"


def one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("btc backup: ") and message in last, result.stderr
    assert result.stderr.count("btc backup:") == 1 and len(last) < 400


@pytest.mark.parametrize("name", BACKUPS)
def test_a_hostile_backup_is_refused_in_one_line_before_any_target_is_touched(
    name, good_backup, tmp_path
):
    spoil, message = BACKUPS[name]
    folder = copy_of(good_backup, tmp_path)
    spoil(folder)
    before = snapshot(folder)
    home, store = targets(tmp_path)
    one_line(run_backup("restore", str(folder), home=home, store=store), message)
    assert list(home.iterdir()) == [] and not store.parent.exists(), "nothing restored"
    assert snapshot(folder) == before


def test_a_good_backup_restores_after_a_failed_attempt(good_backup, tmp_path):
    """A truncated copy used to leave a 0-byte prefect.db that blocked the retry."""
    spoilt = copy_of(good_backup, tmp_path)
    truncate("prefect.db", 0.5)(spoilt)
    home, store = targets(tmp_path)
    one_line(run_backup("restore", str(spoilt), home=home, store=store), "not a usable SQLite")
    done = run_backup("restore", str(good_backup), home=home, store=store)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(home / "prefect.db") as con:
        assert con.execute("SELECT count(*) FROM log").fetchone() == (2000,)
    con.close()
    with Store(store).read() as db:
        assert db.execute("SELECT count(*) FROM observations").fetchone() == (2208,)
    assert sorted(p.name for p in home.iterdir()) == ["prefect.db"]  # no temporary file left


@pytest.mark.parametrize("taken", ["store", "store, a dangling symlink", "prefect.db"])
def test_a_restore_onto_a_taken_target_touches_neither(taken, good_backup, tmp_path):
    home, store = targets(tmp_path)
    store.parent.mkdir()
    if taken == "store":
        store.write_bytes(b"somebody's data")
    elif taken == "prefect.db":
        (home / "prefect.db").write_bytes(b"somebody's data")
    else:
        store.symlink_to(tmp_path / "nowhere")
    before = snapshot(home), snapshot(store.parent)
    one_line(run_backup("restore", str(good_backup), home=home, store=store), "exists; move it")
    assert (snapshot(home), snapshot(store.parent)) == before


PG_BACKUPS = {
    "a pg_dump of a database without Prefect's tables": (False, "holds no Prefect database"),
    "a truncated pg_dump": (True, "pg_restore failed"),
}


@pytest.mark.parametrize("name", PG_BACKUPS)
def test_a_hostile_pg_dump_is_refused_in_one_line(name, good_backup, tmp_path):
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres")
    cut, message = PG_BACKUPS[name]
    folder = copy_of(good_backup, tmp_path)
    (folder / "prefect.db").unlink()
    manifest(database="postgresql", database_file="prefect.pgdump")(folder)
    with scratch_database("btc_hostile_dump") as database:
        env = {"PGHOST": "127.0.0.1", "PGUSER": "postgres", "PGDATABASE": database}
        dump = ["pg_dump", "--format=custom", f"--file={folder / 'prefect.pgdump'}"]
        subprocess.run(dump, env={**os.environ, **env}, check=True, timeout=60)
    if cut:
        truncate("prefect.pgdump", 0.5)(folder)
    home, store = targets(tmp_path)
    never_made = postgres_url("btc_hostile_never_created")
    result = run_backup(
        "restore",
        str(folder),
        home=home,
        store=store,
        PREFECT_API_DATABASE_CONNECTION_URL=never_made,
    )
    one_line(result, message)
    assert not store.parent.exists()
