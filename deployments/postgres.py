"""The local PostgreSQL (127.0.0.1:5432, user postgres, trust auth as on CI) as Prefect's
database: a URL for a database, and scratch databases for tests and benchmarks."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc"]


def postgres_available() -> bool:
    """The local PostgreSQL answers as user ``postgres`` (trust auth, as on this project's CI)."""
    try:
        return (
            subprocess.run([*PG_ADMIN, "SELECT 1"], capture_output=True, timeout=10).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def postgres_url(database: str) -> str:
    """Prefect's connection URL for a database on the local PostgreSQL."""
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"


@contextmanager
def scratch_database(prefix: str, template: str = "") -> Iterator[str]:
    """A new database on the local PostgreSQL (a copy of ``template`` if given), dropped
    (connections and all) afterwards."""
    if not postgres_available():
        raise RuntimeError("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create = f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
    subprocess.run([*PG_ADMIN, create], check=True, capture_output=True)
    try:
        yield name
    finally:
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        subprocess.run([*PG_ADMIN, drop], check=False, capture_output=True)
