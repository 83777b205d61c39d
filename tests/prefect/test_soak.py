"""Soak: many sequential deployment runs through one process worker on the Postgres backend.

The worker is long-lived on the user's machine, so it must not fail runs or grow without bound.
``BTC_SOAK_RUNS`` (default 200) sets the number of runs; RSS is the worker process's own, read
from /proc after a warm-up and at the end. The numbers are printed (``pytest -s``) for the notes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import duckdb
import pytest
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from btc_core.settings import PROJECT_ROOT
from deployments.stack import setup_and_deploy, stop
from tests.prefect.conftest import Server, postgres_serve
from tests.prefect.helpers import run_deployment

pytestmark = pytest.mark.integration
RUNS = int(os.environ.get("BTC_SOAK_RUNS", "200"))
WARM_UP = 10
SAMPLE_EVERY = 20
# The bound stated for the worker's own RSS: from the end of the warm-up to the last run it may
# grow this much (measured here: +47 MiB over 190 runs, 220 -> 267 MiB), and never pass the cap.
RSS_GROWTH_BOUND_MIB = 80.0
RSS_BOUND_MIB = 400.0
REPORT = PROJECT_ROOT / "var" / "soak.json"  # the numbers, for the notes (var/ is not committed)


def in_states(*types: StateType) -> FlowRunFilter:
    return FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(types))))


def rss_mib(pid: int) -> float:
    """Resident set size of one process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for PID {pid}")


def children(pid: int) -> list[int]:
    """PIDs of the live child processes of ``pid``."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()]


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """A Postgres-backed server of its own, so no other test's worker takes these runs."""
    with postgres_serve(tmp_path_factory.mktemp("prefect-soak")) as server:
        setup_and_deploy(server.home, server.api_url)
        yield server


@pytest.mark.timeout(RUNS * 30 + 300)  # ~6 s a run on a quiet machine; pytest's 600 s is too short
def test_sequential_runs_never_fail_and_the_worker_stays_bounded(soak_server, tmp_path):
    db = tmp_path / "btc.duckdb"
    worker = soak_server.worker(poll_s=1.0, BTC_DB_PATH=str(db), BTC_NOTIFY="none")
    durations, series = [], []
    try:
        with soak_server.client() as client:
            for i in range(RUNS):
                if i >= WARM_UP and (i - WARM_UP) % SAMPLE_EVERY == 0:
                    series.append((i, rss_mib(worker.pid)))
                started = time.monotonic()
                run = run_deployment(client, "btc-pipeline/btc-hourly", timeout_s=120)
                durations.append(time.monotonic() - started)
                assert run.state.name == "Completed", f"run {i}: {run.state.message}"
            series.append((RUNS, rss_mib(worker.pid)))
            deadline = time.monotonic() + 30  # flow processes of the last run exit
            while children(worker.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            left = children(worker.pid)
            # every run of the server: ours, and any the schedules made due meanwhile
            completed = client.count_flow_runs(flow_run_filter=in_states(StateType.COMPLETED))
            bad = client.read_flow_runs(
                flow_run_filter=in_states(StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
            )
    finally:
        stop(worker.pid, sigints=2)
    durations.sort()
    report = {
        "runs": RUNS,
        "median_s": round(durations[len(durations) // 2], 2),
        "max_s": round(durations[-1], 2),
        "worker_rss_mib_after_runs": [(n, round(mib, 1)) for n, mib in series],
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    print(f"\nsoak: {report}")
    warm, end = series[0][1], series[-1][1]
    assert completed >= RUNS
    assert bad == [], [(r.name, r.state.message) for r in bad]
    assert left == [], f"flow processes left behind by the worker: {left}"
    assert end - warm <= RSS_GROWTH_BOUND_MIB, report
    assert end <= RSS_BOUND_MIB, report
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone() == (
            2208,
            2208,
        )
