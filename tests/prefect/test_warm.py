"""The warm path (flows/warm.py) as its users run it: a real process, a real server, an API call
and an event, then SIGTERM; and its runs in flight when a warm process is killed -9 or stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import duckdb
import pytest
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
from prefect.events import emit_event
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

from deployments.processes import prefect_env, start_warm_path
from flows.warm import EVENT, btc_refresh, stale_after
from tests.prefect.helpers import wait_until

pytestmark = pytest.mark.integration


def completed_refreshes(client) -> int:
    runs = client.read_task_runs(
        task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["btc-refresh"]))
    )
    return sum(r.state is not None and r.state.is_completed() for r in runs)


def warm_env(server, tmp_path: Path, **env: str) -> dict[str, str]:
    """A warm process's environment: the test server, its DuckDB and results in tmp_path."""
    return prefect_env(
        server.home,
        server.api_url,
        BTC_DB_PATH=str(tmp_path / "warm.duckdb"),
        BTC_NOTIFY="none",
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"),
        **env,
    )


@pytest.fixture
def warm(prefect_server, tmp_path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """``python -m flows.warm`` against the test server, its DuckDB in tmp_path."""
    proc = start_warm_path(warm_env(prefect_server, tmp_path), tmp_path / "warm.log")
    yield proc, tmp_path / "warm.duckdb"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture
def silent_api() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers: a slow API."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


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


def state_of(client, run_id: UUID) -> str:
    run = client.read_task_run(run_id)
    return run.state.type.value if run.state else "NONE"


def test_no_refresh_is_left_running_after_kill_9_or_sigterm(prefect_server, tmp_path, silent_api):
    """Issue 31 row 5: a refresh against a slow API, its warm process killed -9, stayed Running
    for good (Prefect's zombie rule covers flow runs only). Now the next warm process's sweep
    ends it Crashed, with its child extract, once no heartbeat has named it for three beats,
    and leaves its own live run alone; on SIGTERM Prefect's task worker crashes its runs."""
    env = warm_env(
        prefect_server,
        tmp_path,
        BTC_WARM_HEARTBEAT_S="1",
        BTC_SOURCE="coingecko",
        BTC_COINGECKO_URL=silent_api,
        BTC_FAILOVER_SOURCE="none",
        BTC_HTTP_RETRIES="0",
        BTC_READ_TIMEOUT_S="600",
    )
    procs = [start_warm_path(env, tmp_path / "killed.log")]
    shared = {PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path / "results"}
    try:
        with prefect_server.in_process(shared), prefect_server.client() as client:
            first = btc_refresh.delay().task_run_id
            wait_until(lambda: state_of(client, first) == "RUNNING", 60, "the refresh Running")
            procs[0].kill()
            killed_at = time.monotonic()
            procs.append(start_warm_path(env, tmp_path / "next.log"))
            wait_until(lambda: state_of(client, first) == "CRASHED", stale_after(1) + 60, "swept")
            took = time.monotonic() - killed_at
            assert took >= stale_after(1) - 3, f"Crashed {took:.1f} s after the kill: too early"
            assert "no heartbeat" in (client.read_task_run(first).state.message or "")
            children = [
                r
                for r in client.read_task_runs()
                if any(p.id == first for p in r.task_inputs.get("__parents__", []))
            ]
            assert children and all(c.state and c.state.is_crashed() for c in children)
            print(f"kill -9: Crashed {took:.1f} s later, with {len(children)} child task runs")

            second = btc_refresh.delay().task_run_id
            wait_until(lambda: state_of(client, second) == "RUNNING", 60, "the 2nd refresh Running")
            time.sleep(stale_after(1) + 3)  # sweeps of its own process meanwhile
            assert state_of(client, second) == "RUNNING"
            procs[1].send_signal(signal.SIGTERM)
            procs[1].wait(timeout=20)
            assert state_of(client, second) == "CRASHED"  # by Prefect's task worker
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
