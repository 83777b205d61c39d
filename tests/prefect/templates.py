"""Databases Prefect has already migrated, copied for each new test server.

A fresh server spends most of its start in alembic: 11.5 s (10 s of CPU) on a new SQLite file
against 5.3 s on a migrated one, 7.4 s against 5.2 s on PostgreSQL. The suite starts a dozen
servers on two busy cores, so each kind is migrated once per Prefect version (``prefect server
database upgrade``, under a file lock for the xdist workers) and copied: the SQLite file into the
new PREFECT_HOME, the PostgreSQL database as ``CREATE DATABASE ... TEMPLATE``. Migrations from
scratch stay tested where a person meets them: the README's ``make demo`` in a fresh copy, and
the upgrade drill (tests/ops).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import prefect

from deployments.postgres import PG_ADMIN, postgres_url
from deployments.processes import BIN, prefect_env

# Beside the PostgreSQL server, not in one checkout: two checkouts testing at once share the
# template database, so they share its lock too.
CACHE = Path(tempfile.gettempdir()) / "btc-prefect-templates"
VERSION = prefect.__version__.replace(".", "_").replace("+", "_")


@contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _upgrade(home: Path, **env: str) -> None:
    """``prefect server database upgrade -y``: every migration, on the database ``env`` names."""
    subprocess.run(
        [str(BIN / "prefect"), "server", "database", "upgrade", "-y"],
        env=prefect_env(home, **env),
        check=True,
        capture_output=True,
        timeout=300,
    )


def seed_sqlite(home: Path) -> None:
    """Put a migrated ``prefect.db`` in ``home`` (a new PREFECT_HOME) unless it has one."""
    target = home / "prefect.db"
    if target.exists():
        return
    template = CACHE / f"prefect-{VERSION}.db"
    with _locked(template.name):
        if not template.exists():
            scratch = CACHE / f"prefect-{VERSION}-home"
            shutil.rmtree(scratch, ignore_errors=True)
            # explicit: a PREFECT_API_DATABASE_CONNECTION_URL in the environment would win
            _upgrade(
                scratch,
                PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{scratch}/prefect.db",
            )
            (scratch / "prefect.db").replace(template)
            shutil.rmtree(scratch, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


def postgres_template() -> str:
    """The name of a migrated database on the local PostgreSQL, to copy with ``TEMPLATE``."""
    name = f"btc_prefect_template_{VERSION}"
    with _locked(name):
        found = subprocess.run(
            [*PG_ADMIN, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not found:
            building = f"{name}_building"
            subprocess.run([*PG_ADMIN, f"DROP DATABASE IF EXISTS {building}"], check=True)
            subprocess.run([*PG_ADMIN, f"CREATE DATABASE {building}"], check=True)
            _upgrade(
                CACHE / f"{name}-home",
                PREFECT_API_DATABASE_CONNECTION_URL=postgres_url(building),
            )
            subprocess.run([*PG_ADMIN, f"ALTER DATABASE {building} RENAME TO {name}"], check=True)
    return name
