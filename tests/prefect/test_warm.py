"""The warm path (flows/warm.py) as its users run it: a real process, a real server, an API call
and an event, then SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
from prefect.events import emit_event
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

from deployments.processes import prefect_env, start_warm_path
from flows.warm import EVENT, btc_refresh

pytestmark = pytest.mark.integration


def completed_refreshes(client) -> int:
    runs = client.read_task_runs(
        task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["btc-refresh"]))
    )
    return sum(r.state is not None and r.state.is_completed() for r in runs)


@pytest.fixture
def warm(prefect_server, tmp_path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """``python -m flows.warm`` against the test server, its DuckDB in tmp_path."""
    db = tmp_path / "warm.duckdb"
    log = tmp_path / "warm.log"
    env = prefect_env(
        prefect_server.home,
        prefect_server.api_url,
        BTC_DB_PATH=str(db),
        BTC_NOTIFY="none",
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"),
    )
    proc = start_warm_path(env, log)
    yield proc, db
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_an_api_call_and_an_event_each_run_a_refresh_then_sigterm_stops_it(
    warm, prefect_server, tmp_path
):
    proc, db = warm
    shared = {PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path / "results"}  # parameters, result
    with prefect_server.in_process(shared), prefect_server.client() as client:
        result = btc_refresh.delay().result(timeout=120)
        assert result.startswith("loaded 2208 new")
        before = completed_refreshes(client)
        emit_event(event=EVENT, resource={"prefect.resource.id": "btc.replay.test"})
        deadline = time.monotonic() + 120
        while completed_refreshes(client) <= before:
            assert time.monotonic() < deadline, "the event never ran a refresh"
            time.sleep(0.5)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone() == (
            2208,
            2208,
        )
        assert con.execute("SELECT count(*) FROM daily_avg").fetchone() == (92,)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) is not None
