"""Multi-year backfills on a Dask cluster: ``btc_backfill_dask`` (deployment ``btc-backfill-dask``).

The same tasks as ``btc_backfill`` (flows/btc.py), run by prefect-dask's ``DaskTaskRunner`` on a
``distributed.LocalCluster`` of ``BTC_DASK_WORKERS`` processes (default 2) started inside the flow
run: on a process worker's machine, or inside the one Kubernetes/ECS job of the run. Every window
of ``days_per_task`` UTC days is one extract; all of them are submitted at once and each load
starts as soon as its extract is done (no batch barrier).

Where the speed-up comes from, and where it does not:

- Extracts run in parallel, one per Dask worker process (no GIL shared between them): CSV parsing
  and validation for replay, waiting on HTTP for live sources. This is the part that scales.
- Loads do not: DuckDB allows one writer, so loads queue on the store's file lock (bounded by
  ``BTC_LOCK_TIMEOUT_S``) and commit one at a time. A load is small (one window's rows), so the
  queue is short; none surfaces ``StoreBusy`` unless the lock is held longer than the timeout.
- Each Prefect task costs a fixed overhead (state changes, result persistence) that parallelism
  hides but does not remove; ``days_per_task`` > 1 amortizes it for long windows.
- The cluster is local to the flow run on purpose: the DuckDB file lives on that machine. A remote
  Dask cluster (dask-kubernetes, Coiled) needs a store every worker can write: see docs/cluster.md.

    python flows/dask_backfill.py 2019-11-20 2023-12-31 [days_per_task]
"""

from __future__ import annotations

import sys
from datetime import date, timedelta

from prefect import flow, unmapped
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect_dask import DaskTaskRunner

from btc_core.observations import Window
from btc_core.settings import Settings
from flows.boundary import guarded
from flows.btc import chart, extract, load, runtime_settings, with_policy


def dask_task_runner(workers: int | None = None) -> DaskTaskRunner:
    """A Dask LocalCluster of ``workers`` processes (default ``BTC_DASK_WORKERS``), one thread
    each, no dashboard; started when the flow run starts and closed when it ends."""
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": workers or Settings.from_env().dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        },
    )


@flow(name="btc-backfill-dask", task_runner=dask_task_runner())  # type: ignore[arg-type]
@guarded
def btc_backfill_dask(
    start: date, end: date, source: str | None = None, days_per_task: int = 1
) -> str:
    """Load the UTC days ``start``..``end``: one extract per ``days_per_task`` days, in parallel
    on the Dask workers; each load (with the daily averages of its days) queues on the store's
    single-writer lock."""
    if days_per_task < 1:
        raise ValueError("days_per_task must be >= 1")
    settings = run_coro_as_sync(runtime_settings(source=source))  # a sync flow
    windows = list(Window.days(start, end).chunks(timedelta(days=days_per_task)))
    # Not quote(settings) as in flows/btc.py: Dask reads tuples in a task's arguments as tasks of
    # its own graph, and a quote is a tuple, so the tasks would receive a bare tuple.
    batches = with_policy(extract, settings).map(unmapped(settings), windows)
    results = with_policy(load, settings).map(unmapped(settings), batches).result()
    # Submitted: an async task called directly from a sync flow returns a coroutine nobody awaits
    # (Prefect types the future's result as that coroutine).
    chart.submit(settings).result()  # type: ignore[unused-coroutine]
    loaded = sum(r.inserted + r.updated for r in results)
    return (
        f"backfilled {start} .. {end} in {len(windows)} extract(s): "
        f"{loaded} observations new or updated"
    )


if __name__ == "__main__":  # the guard matters: Dask's worker processes re-import __main__
    first, last = (date.fromisoformat(a) for a in sys.argv[1:3])
    print(btc_backfill_dask(first, last, days_per_task=int(sys.argv[3]) if sys.argv[3:] else 1))
