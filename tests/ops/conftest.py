"""The highly available control plane of docs/operations.md, started once for the ops tests:
``python -m deployments.ha up`` on a scratch PostgreSQL database, with messaging on a Redis of
its own; workers are started by each test (and stopped by it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.schemas.actions import WorkPoolUpdate

from btc_core.settings import PROJECT_ROOT
from deployments.ha import HaStack, Ports, free_ports
from deployments.postgres import postgres_available, postgres_url, scratch_database
from deployments.runs import stop_schedules
from tests.prefect.conftest import NO_POSTGRES, Server

TOOLS = ("haproxy", "prometheus", "promtool", "supervisord", "redis-server")
# Test speed-ups of Prefect's own loops (production keeps the defaults): the foreman marks a
# worker OFFLINE after 3 missed heartbeats (3 x 3 s here), the scheduler looks every 5 s.
FAST_LOOPS = {
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
}
WORKER_HEARTBEAT_S = "3"
# Prometheus scrapes and evaluates rules this often in the tests (production: 15 s).
SCRAPE_INTERVAL = "5s"
# Flow runs at once in the pool: each is a Python process; more only thrash two busy cores.
POOL_SLOTS = 4


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def ops_tools() -> None:
    """infra/provision-ops.sh: HAProxy, Prometheus (promtool), supervisor, redis-server."""
    if missing_tools() and os.geteuid() == 0:
        subprocess.run(
            ["bash", str(PROJECT_ROOT / "infra" / "provision-ops.sh")], check=True, timeout=900
        )
    if missing := missing_tools():
        pytest.skip(f"{', '.join(missing)} missing: run infra/provision-ops.sh as root")


def worker_env(db: Path) -> dict[str, str]:
    """A worker host: its own DuckDB file, counts-only artifacts, no chart, no notification."""
    return {
        "BTC_DB_PATH": str(db),
        "BTC_NOTIFY": "none",
        "BTC_ARTIFACTS": "summary",
        "BTC_CHART": "none",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": WORKER_HEARTBEAT_S,
    }


@dataclass
class Ha:
    """The running stack, a Server handle on its balancer (for workers and clients), the
    scratch database and the workers' DuckDB file."""

    stack: HaStack
    server: Server
    database: str
    worker_db: Path
    up_seconds: float

    def worker(self, **env: str):
        return self.server.worker(poll_s=1.0, **worker_env(self.worker_db), **env)


def ha_command(*args: str, env: dict[str, str], timeout_s: float = 600) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deployments.ha", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, f"deployments.ha {args[0]}:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="package")  # stopped once tests/ops is done, not at the session's end
def ha(tmp_path_factory: pytest.TempPathFactory, ops_tools: None) -> Iterator[Ha]:
    if not postgres_available():
        pytest.skip(NO_POSTGRES)
    tmp = tmp_path_factory.mktemp("ha")
    folder, worker_db = tmp / "ha", tmp / "worker" / "btc.duckdb"
    ports = Ports.starting_at(free_ports(4710, 7))
    with scratch_database("btc_ops_ha") as database:
        env = {
            **os.environ,
            **FAST_LOOPS,
            "PREFECT_API_DATABASE_CONNECTION_URL": postgres_url(database),
            "BTC_DB_PATH": str(worker_db),  # the exporter reads the workers' store
        }
        args = ["--dir", str(folder), "--port", str(ports.base)]
        started = time.monotonic()
        # Its own redis-server: no database of the machine's Redis is touched.
        ha_command("up", *args, "--own-redis", "--scrape-interval", SCRAPE_INTERVAL, env=env)
        up_seconds = time.monotonic() - started
        stack = HaStack.load(folder)
        server = Server(stack.api_url, stack.home, tmp / "logs", postgres_url(database))
        try:
            with server.client() as client:
                stop_schedules(client)
                client.update_work_pool("btc-process", WorkPoolUpdate(concurrency_limit=POOL_SLOTS))
            yield Ha(stack, server, database, worker_db, up_seconds)
        finally:
            server.stop_workers()
            ha_command("down", *args, env=env)
