"""The Dask backfill on a real LocalCluster against a real server: same bytes as the plain backfill.

Extracts run in parallel Dask worker processes; loads queue on the store's single-writer lock.
The contract is the export: every day of the window, byte for byte the plain (sequential) core
backfill's, with no task retried (a StoreBusy would show up as a retry or a failure).
"""

from datetime import date
from itertools import pairwise
from pathlib import Path

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

from btc_core.observations import Window
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings
from btc_core.transform import export
from flows.dask_backfill import btc_backfill_dask, dask_task_runner
from tests.crash import pausing_env
from tests.prefect.helpers import all_task_runs, completed_run

pytestmark = pytest.mark.integration
WORKERS = 2


@pytest.fixture
def dask_env(bare_server, tmp_path, monkeypatch, shared_csv):
    """Settings in the environment (Dask worker processes inherit it), data in tmp_path."""
    monkeypatch.setenv("BTC_DB_PATH", str(tmp_path / "dask.duckdb"))
    monkeypatch.setenv("BTC_REPLAY_FILE", str(shared_csv))
    monkeypatch.setenv("BTC_NOTIFY", "none")
    monkeypatch.setenv("BTC_ARTIFACTS", "none")
    with bare_server.in_process({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "results"}):
        yield bare_server


def plain_backfill(shared_csv: Path, db: Path, first: date, last: date) -> tuple[str, int]:
    """The sequential reference: the core's backfill (what `btc backfill` runs), exported, and
    how many observations it loaded."""
    settings = Settings.from_env(env={}, db_path=db, replay_file=shared_csv, notify="none")
    results = backfill(settings, Window.days(first, last))
    return export(store_for(settings)), sum(r.inserted + r.updated for r in results)


def run_dask(server, first: date, last: date, days_per_task: int) -> tuple[str, list]:
    state = btc_backfill_dask.with_options(task_runner=dask_task_runner(WORKERS))(
        first, last, days_per_task=days_per_task, return_state=True
    )
    assert state.is_completed(), state.message
    with server.client() as client:
        runs = all_task_runs(client, state.state_details.flow_run_id)
    return state.result(), runs


def check(runs: list, extracts: int) -> None:
    """One extract per window, one load each, then the chart; all Completed at the first try."""
    names = sorted(r.task_key.split("-")[0] for r in runs)
    assert names == sorted(["extract"] * extracts + ["load"] * extracts + ["chart"])
    assert {r.state.type.value for r in runs} == {"COMPLETED"}
    assert max(r.run_count for r in runs) == 1  # nothing retried: no StoreBusy, no lost day


@pytest.mark.timeout(240)
def test_multi_year_dask_backfill_equals_the_sequential_one(dask_env, shared_csv, tmp_path):
    first, last = date(2019, 11, 20), date(2023, 12, 31)  # the whole shared data set
    # A quarter per task: 17 extracts. Each one reads the whole 36k-row file (replay has no
    # index), so a task per day here would be 1,503 full reads: bench/dask_backfill.py does that.
    summary, runs = run_dask(dask_env, first, last, days_per_task=91)
    days = (last - first).days + 1
    check(runs, extracts=-(-days // 91))
    want, loaded = plain_backfill(shared_csv, tmp_path / "plain.duckdb", first, last)
    assert summary.endswith(f": {loaded} observations new or updated"), summary
    got = export(store_for(Settings.from_env()))
    assert got.count('"day"') == days and got == want


@pytest.mark.timeout(240)
def test_day_by_day_loads_queue_on_the_writer_lock(dask_env, shared_csv, tmp_path, monkeypatch):
    """One task per day across a year boundary, each load holding the lock a while (the core's
    crash-drill hook, in every Dask worker process): overlapping loads wait for each other
    instead of failing."""
    for name, value in pausing_env(0.5, {}).items():
        monkeypatch.setenv(name, value)
    first, last = date(2021, 12, 29), date(2022, 1, 3)
    summary, runs = run_dask(dask_env, first, last, days_per_task=1)
    check(runs, extracts=6)
    loads = sorted((r.start_time, r.end_time) for r in runs if r.task_key.startswith("load"))
    assert any(b[0] < a[1] for a, b in pairwise(loads)), (
        "no two loads overlapped: the test did not exercise the lock"
    )
    want, loaded = plain_backfill(shared_csv, tmp_path / "plain.duckdb", first, last)
    assert summary.endswith(f": {loaded} observations new or updated"), summary
    assert export(store_for(Settings.from_env())) == want


def test_the_deployment_runs_on_the_process_worker(prefect_server, process_worker):
    """btc-backfill-dask from prefect.yaml, run by a real process worker: the flow-run process
    starts its own LocalCluster (spawned Dask workers re-import the engine, not the flow file)."""
    a_quarter_by_month = {"start": "2023-10-01", "end": "2023-12-31", "days_per_task": 31}
    with prefect_server.client() as client:
        run = completed_run(client, "btc-backfill-dask/btc-backfill-dask", **a_quarter_by_month)
        check(all_task_runs(client, run.id), extracts=3)
