"""`flow.serve(name="btc-hourly", cron="0 * * * *")`: the quickstart path, against Postgres."""

import subprocess
import sys
import time

import pytest

from btc_core.settings import PROJECT_ROOT
from deployments.processes import prefect_env, stop
from tests.prefect.helpers import completed_run

pytestmark = pytest.mark.integration


def test_serve_creates_the_hourly_deployment_and_runs_it(postgres_server, tmp_path):
    env = prefect_env(
        postgres_server.home,
        postgres_server.api_url,
        BTC_DB_PATH=str(tmp_path / "s.duckdb"),
        BTC_NOTIFY="none",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )
    with postgres_server.client() as client:  # prove that serve creates it: no leftover from deploy
        for old in client.read_deployments():
            if old.name == "btc-hourly":
                client.delete_deployment(old.id)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.serve"],
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        with postgres_server.client() as client:
            deadline = time.monotonic() + 120
            while True:
                found = [d for d in client.read_deployments() if d.name == "btc-hourly"]
                if found or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert found, (tmp_path / "serve.log").read_text()
            deployment = found[0]
            assert deployment.work_pool_name is None
            assert [s.schedule.cron for s in deployment.schedules] == ["0 * * * *"]
            completed_run(client, "btc-pipeline/btc-hourly", timeout_s=120)
    finally:
        stop(proc.pid, sigints=2)
