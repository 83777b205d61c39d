"""kill -9 in the middle of a load: DuckDB stays consistent, Prefect says Crashed, a rerun and a
restarted worker bring everything back."""

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from prefect.states import Scheduled

from btc_core.observations import utc_now
from deployments.deploy import setup_and_deploy
from deployments.processes import stop
from tests.crash import pausing_env, wait_for_pause
from tests.csvs import rows, write
from tests.prefect.conftest import _serve
from tests.prefect.helpers import completed_run, wait

pytestmark = pytest.mark.integration
BTC = Path(sys.executable).parent / "btc"


def counts(db: Path) -> tuple[int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone()


def test_kill_9_in_the_cli_load_keeps_the_previous_state(replay_csv, tmp_path):
    db = tmp_path / "c.duckdb"
    first = write(tmp_path / "first.csv", rows(replay_csv, 1000))
    env = {**os.environ, "BTC_DB_PATH": str(db), "BTC_NOTIFY": "none"}
    subprocess.run(
        [str(BTC), "run", "--replay-file", str(first)], env=env, check=True, capture_output=True
    )
    proc = subprocess.Popen(
        [str(BTC), "run"],
        env=pausing_env(60, env),
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    pid = wait_for_pause(lambda: seen.append(proc.stderr.readline()) or "".join(seen))
    os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert counts(db) == (1000, 1000)
    subprocess.run([str(BTC), "run"], env=env, check=True, capture_output=True)
    assert counts(db) == (2208, 2208)


@pytest.fixture(scope="module")
def drill_server(tmp_path_factory):
    gen = _serve(tmp_path_factory.mktemp("prefect-crash"))
    server = next(gen)
    setup_and_deploy(server.home, server.api_url)
    yield server
    gen.close()


def test_kill_9_of_a_flow_run_is_crashed_and_a_restarted_worker_recovers(drill_server, tmp_path):
    db = tmp_path / "w.duckdb"
    # loads also hold the server's writer limit: a killed holder must not block the next writer
    env = {"BTC_DB_PATH": str(db), "BTC_NOTIFY": "none", "BTC_WRITER_LIMIT": "btc-duckdb-writer"}
    pausing = pausing_env(120, {})
    worker = drill_server.worker(poll_s=1.0, **pausing, **env)
    log = drill_server.logs / f"worker-{len(drill_server.workers) - 1}.log"
    with drill_server.client() as client:
        deployment = client.read_deployment_by_name("btc-pipeline/btc-hourly")
        run = client.create_flow_run_from_deployment(deployment.id)
        pid = wait_for_pause(log.read_text)
        os.kill(pid, signal.SIGKILL)
        crashed = wait(client, run.id, timeout_s=120)
        assert crashed.state.name == "Crashed"
        assert not db.exists() or counts(db) == (0, 0)
        stop(worker.pid, sigints=2)
        drill_server.workers.remove(worker)
        # a run scheduled while no worker polls waits; the restarted worker picks it up
        soon = client.create_flow_run_from_deployment(
            deployment.id, state=Scheduled(scheduled_time=utc_now() + timedelta(seconds=5))
        )
        drill_server.worker(poll_s=1.0, **env)
        assert wait(client, soon.id, timeout_s=180).state.name == "Completed"
        completed_run(client, "btc-pipeline/btc-hourly")
    assert counts(db) == (2208, 2208)
