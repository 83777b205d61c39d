"""Two worker "hosts" share one DuckLake: a real Prefect server (PostgreSQL), two process workers
with their own working directory, PREFECT_HOME and local data folder, the lake's catalog in
PostgreSQL and its Parquet files in S3 (moto) on 127.0.0.1.

Four overlapping backfills at once, split between the hosts, each load pausing inside its
transaction so that unserialized writers would duplicate the new timestamps they share (as
tests/integration/test_ducklake.py shows they do). The writers' global concurrency limit serializes them: no duplicate, the
same export bytes as the local DuckDB file, and the scheduled compaction deployment works.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from btc_core.lake import LakeStore
from btc_core.observations import Window
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings
from btc_core.transform import export
from deployments.deploy import setup_and_deploy
from deployments.names import PROCESS_POOL
from deployments.processes import start_worker
from tests.crash import pausing_env
from tests.lake import Lake, lake_s3, new_lake
from tests.prefect.conftest import Server, postgres_serve
from tests.prefect.helpers import wait

pytestmark = pytest.mark.integration

HOSTS = ("host-a", "host-b")  # each polls its own work queue, so both surely run flows
BACKFILLS = [
    ("2023-10-01", "2023-10-03"),
    ("2023-10-02", "2023-10-04"),
    ("2023-10-03", "2023-10-05"),
    ("2023-10-04", "2023-10-06"),
]
DAYS = Window.days(date(2023, 10, 1), date(2023, 10, 6))


@pytest.fixture(scope="module")
def lake() -> Iterator[Lake]:
    with lake_s3() as s3, new_lake(s3) as lake:
        yield lake


def host_dir(tmp: Path, name: str) -> Path:
    (tmp / name / "var").mkdir(parents=True)
    return tmp / name


@pytest.fixture(scope="module")
def lake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Prefect server of this module on PostgreSQL, set up and deployed. Its ports start away
    from the other suites' 4300, so concurrent suites on one machine do not meet."""
    tmp = tmp_path_factory.mktemp("prefect-lake")
    with postgres_serve(tmp, first_port=4600 + os.getpid() % 300) as server:
        setup_and_deploy(server.home, server.api_url)
        yield server  # workers, then the server, are stopped on exit


@pytest.fixture(scope="module")
def hosts(lake: Lake, lake_server: Server, tmp_path_factory) -> dict[str, Path]:
    """One process worker per host directory, each polling its own work queue (the lake is set
    up first, so it is torn down after the workers stop)."""
    tmp = tmp_path_factory.mktemp("lake-hosts")
    found = {}
    with lake_server.client() as client:
        for name in HOSTS:
            client.create_work_queue(name=name, work_pool_name=PROCESS_POOL)
    for name in HOSTS:
        root = found[name] = host_dir(tmp, name)
        proc = start_worker(
            root / "prefect-home",
            lake_server.api_url,
            PROCESS_POOL,
            lake_server.logs / f"worker-{name}.log",
            1.0,
            queue=name,
            cwd=root,
            BTC_DB_PATH=str(root / "var" / "btc.duckdb"),  # only this host's lock file lives here
            BTC_NOTIFY="none",
            BTC_ARTIFACTS="summary",
            BTC_EXTRACT_CACHE_S="1",
            **pausing_env(0.3, {}),  # loads hold the lock a while: they surely overlap
            BTC_LOCK_TIMEOUT_S="120",
            **lake.env(),
        )
        lake_server.workers.append(proc)  # stopped (SIGINT twice) before the server
    return found


def test_two_hosts_four_concurrent_runs_one_lake(lake_server, hosts, lake, tmp_path):
    with lake_server.client() as client:
        deployment = client.read_deployment_by_name("btc-backfill/btc-backfill")
        runs = [
            client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"start": start, "end": end},
                work_queue_name=HOSTS[i % 2],
            )
            for i, (start, end) in enumerate(BACKFILLS)
        ]
        states = [wait(client, run.id, timeout_s=240).state for run in runs]
    assert [s.name for s in states] == ["Completed"] * 4, [s.message for s in states]
    for root in hosts.values():
        assert (root / "var" / "ducklake.lock").exists(), f"{root.name} wrote to the lake"

    shared = Settings.from_env(env=lake.env(), db_path=tmp_path / "reader" / "btc.duckdb")
    store = store_for(shared)
    assert isinstance(store, LakeStore)
    with store.connect() as con:
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone() == (
            6 * 24,
            6 * 24,
        ), "duplicate observations: writers were not serialized"
    local = Settings.from_env(env={}, db_path=tmp_path / "local.duckdb", notify="none")
    backfill(local, DAYS)
    expected = export(store_for(local))
    assert export(store) == expected

    with lake_server.client() as client:
        compact = client.read_deployment_by_name("btc-compact/btc-compact")
        run = client.create_flow_run_from_deployment(
            compact.id, parameters={"keep_hours": 0}, work_queue_name=HOSTS[0]
        )
        assert wait(client, run.id, timeout_s=120).state.name == "Completed"
    assert store.file_counts() == {"observations": 1, "daily_avg": 1}
    assert export(store) == expected
