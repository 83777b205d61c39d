"""Four writers at once on one DuckDB file, Prefect runs and the CLI mixed: all succeed, the
table is exactly right, and nobody sees a DuckDB lock error."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from btc_core.pipeline import run_cycle, store_for
from btc_core.settings import Settings
from btc_core.store import Store
from btc_core.transform import export
from tests.prefect.helpers import wait

pytestmark = pytest.mark.integration
BTC = Path(sys.executable).parent / "btc"


def test_prefect_runs_and_cli_runs_share_one_duckdb(
    prefect_server, process_worker, worker_db, tmp_path
):
    env = {
        **os.environ,
        "BTC_DB_PATH": str(worker_db),
        "BTC_NOTIFY": "none",
        "BTC_LOCK_TIMEOUT_S": "120",
    }
    with prefect_server.client() as client:
        backfill = client.read_deployment_by_name("btc-backfill/btc-backfill")
        hourly = client.read_deployment_by_name("btc-pipeline/btc-hourly")
        runs = [
            client.create_flow_run_from_deployment(
                backfill.id, parameters={"start": "2023-10-01", "end": "2023-10-20"}
            ),
            client.create_flow_run_from_deployment(hourly.id),
        ]
        clis = [
            subprocess.Popen(
                [str(BTC), "backfill", "--from", f, "--to", t],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for f, t in (("2023-11-01", "2023-11-30"), ("2023-12-01", "2023-12-31"))
        ]
        clis.append(subprocess.Popen([str(BTC), "run"], env=env, stderr=subprocess.PIPE, text=True))
        for proc in clis:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            assert "lock" not in err.lower()
        for run in runs:
            assert wait(client, run.id, timeout_s=300).state.name == "Completed"
    with Store(worker_db).read() as con:  # after the writers (the core's lock), not a sleep
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone() == (
            2208,
            2208,
        )
    expected = Settings.from_env(env={}, db_path=tmp_path / "alone.duckdb", notify="none")
    run_cycle(expected)
    assert export(store_for(Settings.from_env(env={}, db_path=worker_db))) == export(
        store_for(expected)
    )
