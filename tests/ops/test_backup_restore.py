"""``make backup`` and ``make restore`` (python -m deployments.backup): the control plane's
database and the worker's DuckDB store, backed up while everything runs and restored onto a
fresh server, where deployments, schedules, blocks, automations and run history are back and the
next scheduled run completes. PostgreSQL (the HA stack) and SQLite (a single server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.types._datetime import now

from btc_core.report import store_stats
from btc_core.settings import PROJECT_ROOT
from btc_core.store import Store
from deployments.ha import free_ports
from deployments.postgres import postgres_url, scratch_database
from deployments.processes import start_server, stop
from tests.e2e.runs import run
from tests.ops.conftest import FAST_LOOPS, Ha, worker_env
from tests.prefect.conftest import Server
from tests.prefect.helpers import wait

pytestmark = pytest.mark.integration

HOURLY, INTERVAL = "btc-pipeline/btc-hourly", "btc-pipeline/btc-interval"
AUTOMATIONS = {"btc-run-failed", "btc-runs-stuck-late", "btc-crash-zombie-runs"}


def backup_cli(*args: str, **env: str) -> tuple[str, float]:
    """``python -m deployments.backup ...`` with ``env``; its output and wall time."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "deployments.backup", *args],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"deployments.backup {args[0]}:\n{result.stdout}{result.stderr}"
    return result.stdout, time.monotonic() - started


def backup_folder(output: str) -> Path:
    line = next(line for line in output.splitlines() if line.startswith("backup "))
    return Path(line.split()[1].rstrip(":"))


@contextmanager
def fresh_server(tmp: Path, migrate: bool = False, **env: str) -> Iterator[Server]:
    """A single server (API and services) in ``tmp``; on a restored database, migrations stay
    off (they are their own step: python -m deployments.ha migrate)."""
    home, logs = tmp / "home", tmp / "logs"
    port = free_ports(4720, 1)
    migrations = {} if migrate else {"PREFECT_API_DATABASE_MIGRATE_ON_START": "false"}
    proc = start_server(home, port, logs / "server.log", **migrations, **env)
    server = Server(f"http://127.0.0.1:{port}/api", home, logs)
    try:
        yield server
    finally:
        server.stop_workers()
        stop(proc.pid, sigints=1)


def scheduled_every_30_s(server: Server) -> None:
    """Give btc-interval a 30 s schedule and wait until the scheduler planned runs of it."""
    with server.client() as client:
        deployment = client.read_deployment_by_name(INTERVAL)
        client.create_deployment_schedules(
            deployment.id, [(IntervalSchedule(interval=timedelta(seconds=30)), True)], 3
        )
        deadline = time.monotonic() + 60
        while not planned(client, deployment.id):
            assert time.monotonic() < deadline, "the scheduler planned no run of btc-interval"
            time.sleep(1)


def planned(client, deployment_id, after=None) -> list:
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            expected_start_time=FlowRunFilterExpectedStartTime(after_=after) if after else None,
        ),
    )


def unschedule(server: Server) -> None:
    """Back to no schedule on the shared stack: the schedule, then the runs it planned."""
    with server.client() as client:
        deployment = client.read_deployment_by_name(INTERVAL)
        for schedule in deployment.schedules:
            if schedule.active:
                client.delete_deployment_schedule(deployment.id, schedule.id)
        for flow_run in planned(client, deployment.id):
            client.delete_flow_run(flow_run.id)


def next_scheduled_run_completes(server: Server, backed_up_at) -> str:
    """The first run the scheduler planned for after the backup: its final state."""
    with server.client() as client:
        deployment = client.read_deployment_by_name(INTERVAL)
        upcoming = sorted(
            planned(client, deployment.id, after=backed_up_at), key=lambda r: r.expected_start_time
        )
        assert upcoming, "no scheduled run after the restore"
        return wait(client, upcoming[0].id, timeout_s=300).state.name


def test_backup_of_postgres_and_store_restores_onto_a_fresh_server(ha: Ha, tmp_path: Path, figure):
    secret = f"restore-me-{uuid.uuid4().hex}"
    ha.worker()
    with ha.server.client() as client:
        history = run(client, HOURLY)
        source_deployments = {d.name for d in client.read_deployments()}
    with ha.server.in_process():
        Secret(value=secret).save("ops-backup-probe", overwrite=True)
    ha.server.stop_workers()
    scheduled_every_30_s(ha.server)
    try:
        backed_up_at = now("UTC")
        output, backup_s = backup_cli(
            "create",
            "--out",
            str(tmp_path / "backups"),
            PREFECT_API_DATABASE_CONNECTION_URL=postgres_url(ha.database),
            BTC_DB_PATH=str(ha.worker_db),
        )
    finally:
        unschedule(ha.server)
    folder = backup_folder(output)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["database"] == "postgresql" and manifest["store_file"] == "btc.duckdb"

    restored_db = tmp_path / "restored" / "btc.duckdb"
    with scratch_database("btc_ops_restore") as database:
        url = postgres_url(database)
        _, restore_s = backup_cli(
            "restore",
            str(folder),
            PREFECT_API_DATABASE_CONNECTION_URL=url,
            BTC_DB_PATH=str(restored_db),
        )
        again = subprocess.run(
            [sys.executable, "-m", "deployments.backup", "restore", str(folder)],
            env={**os.environ, "PREFECT_API_DATABASE_CONNECTION_URL": url},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
        assert again.returncode == 1
        assert (
            again.stderr.strip()
            == f"btc backup: database {database} is not empty; restore into a new one"
        )
        assert store_stats(Store(restored_db)) == store_stats(Store(ha.worker_db))

        with fresh_server(
            tmp_path / "fresh", PREFECT_API_DATABASE_CONNECTION_URL=url, **FAST_LOOPS
        ) as server:
            with server.client() as client:
                assert {d.name for d in client.read_deployments()} == source_deployments
                interval = client.read_deployment_by_name(INTERVAL)
                assert [s.schedule.interval for s in interval.schedules if s.active] == [
                    timedelta(seconds=30)
                ]
                assert {a.name for a in client.read_automations()} >= AUTOMATIONS
                assert client.read_flow_run(history.id).state.name == "Completed"
            with server.in_process():
                assert Secret.load("ops-backup-probe").get() == secret
            server.worker(poll_s=1.0, **worker_env(restored_db))
            assert next_scheduled_run_completes(server, backed_up_at) == "Completed"
    figure(
        f"PostgreSQL backup {backup_s:.1f} s (pg_dump {manifest['database_seconds']} s, "
        f"store {manifest['store_seconds']} s), restore {restore_s:.1f} s"
    )


def test_backup_of_sqlite_through_its_backup_api_restores_onto_a_fresh_server(
    tmp_path: Path, figure
):
    secret = f"restore-me-{uuid.uuid4().hex}"
    source_home, restored_home = tmp_path / "source" / "home", tmp_path / "restored" / "home"
    no_store = str(tmp_path / "no-store" / "btc.duckdb")  # this host runs no worker
    with fresh_server(tmp_path / "source", migrate=True) as source:
        with source.in_process():
            Secret(value=secret).save("ops-backup-probe")
        output, backup_s = backup_cli(
            "create",
            "--out",
            str(tmp_path / "backups"),
            PREFECT_HOME=str(source_home),
            BTC_DB_PATH=no_store,
        )
    folder = backup_folder(output)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["database"] == "sqlite" and "store_file" not in manifest
    _, restore_s = backup_cli(
        "restore", str(folder), PREFECT_HOME=str(restored_home), BTC_DB_PATH=no_store
    )
    with fresh_server(tmp_path / "restored") as server, server.in_process():
        assert Secret.load("ops-backup-probe").get() == secret
    figure(f"SQLite backup {backup_s:.1f} s, restore {restore_s:.1f} s")


def test_backup_of_a_missing_database_says_so_in_one_line_and_leaves_no_folder(tmp_path: Path):
    home, out = tmp_path / "no-server", tmp_path / "backups"
    done = subprocess.run(
        [sys.executable, "-m", "deployments.backup", "create", "--out", str(out)],
        env={
            **{k: v for k, v in os.environ.items() if "DATABASE_CONNECTION_URL" not in k},
            "PREFECT_HOME": str(home),
            "BTC_DB_PATH": str(tmp_path / "x.duckdb"),
        },
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"btc backup: no Prefect database at {home / 'prefect.db'}; "
        "set PREFECT_API_DATABASE_CONNECTION_URL\n"
    )
    assert list(out.iterdir()) == []
