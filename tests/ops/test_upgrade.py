"""Upgrades: the migration is its own step, never a server's start. A database made and used by
the previous minor release (locked in tests/ops/previous_prefect/ with the dependencies of its
day, synced into an environment of its own) is upgraded with ``python -m deployments.ha migrate`` by the locked release; a server
of the locked release that never migrates then runs the run the old release scheduled."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from btc_core.settings import PROJECT_ROOT
from deployments.ha import free_ports
from deployments.postgres import PG_ADMIN, postgres_available, postgres_url, scratch_database
from deployments.processes import prefect_env, start_server, stop, wait_for_api
from tests.ops.conftest import worker_env
from tests.prefect.conftest import NO_POSTGRES, Server
from tests.prefect.helpers import wait

pytestmark = pytest.mark.integration

PREVIOUS = "3.8.8"
# Its own uv project, locked (pyproject.toml and uv.lock there): a failed sync is a failure.
PREVIOUS_PROJECT = Path(__file__).parent / "previous_prefect"


@pytest.fixture(scope="module")
def old_prefect() -> Path:
    """``prefect`` of the previous minor release, synced from its lock into an environment of
    its own outside the checkout (uv's cache keeps the wheels: a warm sync takes a second)."""
    venv = Path.home() / ".cache" / "btc-orchestration" / f"prefect-{PREVIOUS}"
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")  # as make finds it
    subprocess.run(
        [uv, "sync", "--frozen", "-q", "--project", str(PREVIOUS_PROJECT)],
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        check=True,
        timeout=600,
    )
    prefect = venv / "bin" / "prefect"
    version = subprocess.run([prefect, "version"], capture_output=True, text=True, check=True)
    assert PREVIOUS in version.stdout, version.stdout
    return prefect


def schema_revision(database: str) -> str:
    select = [*PG_ADMIN[:-1], "-d", database, "-qAtc", "SELECT version_num FROM alembic_version"]
    return subprocess.run(select, capture_output=True, text=True, check=True).stdout.strip()


def old_cli(prefect: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(prefect), "--no-prompt", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"prefect {PREVIOUS} {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_upgrade_from_the_previous_minor_release_then_its_run_completes(
    old_prefect: Path, tmp_path: Path, figure
):
    if not postgres_available():
        pytest.skip(NO_POSTGRES)
    with scratch_database("btc_ops_upgrade") as database:
        url = postgres_url(database)
        # The previous release: its server creates its schema (as 3.8 users had it), a pool,
        # the btc-hourly deployment and a run of it, scheduled now.
        port = free_ports(4730, 1)
        api_url = f"http://127.0.0.1:{port}/api"
        old_env = prefect_env(
            tmp_path / "old-home", api_url, PREFECT_API_DATABASE_CONNECTION_URL=url
        )
        old_server = subprocess.Popen(
            [str(old_prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=old_env,
            stdout=(tmp_path / "old-server.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_api(api_url, timeout_s=240, proc=old_server)
            old_cli(old_prefect, old_env, "work-pool", "create", "btc-process", "--type", "process")
            old_cli(old_prefect, old_env, "deploy", "--name", "btc-hourly")
            scheduled = old_cli(
                old_prefect, old_env, "deployment", "run", "btc-pipeline/btc-hourly"
            )
        finally:
            stop(old_server.pid, sigints=1)
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", scheduled).group(1)
        old_revision = schema_revision(database)

        # The upgrade: one command, with every server stopped.
        started = time.monotonic()
        migrate = subprocess.run(
            [sys.executable, "-m", "deployments.ha", "migrate", "--dir", str(tmp_path / "ha")],
            env={**os.environ, "PREFECT_API_DATABASE_CONNECTION_URL": url},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        migrated_s = time.monotonic() - started
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        new_revision = schema_revision(database)
        assert new_revision != old_revision

        # The locked release, never migrating on start, runs what the old one scheduled.
        home, logs = tmp_path / "home", tmp_path / "logs"
        port = free_ports(4730, 1)
        proc = start_server(
            home,
            port,
            logs / "server.log",
            PREFECT_API_DATABASE_CONNECTION_URL=url,
            PREFECT_API_DATABASE_MIGRATE_ON_START="false",
        )
        server = Server(f"http://127.0.0.1:{port}/api", home, logs)
        try:
            server.worker(poll_s=1.0, **worker_env(tmp_path / "worker" / "btc.duckdb"))
            with server.client() as client:
                assert wait(client, run_id, timeout_s=300).state.name == "Completed"
        finally:
            server.stop_workers()
            stop(proc.pid, sigints=1)
    figure(f"schema {old_revision} ({PREVIOUS}) -> {new_revision} in {migrated_s:.1f} s")
