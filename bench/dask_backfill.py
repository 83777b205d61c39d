"""Dask backfill benchmark: ``btc_backfill_dask`` on a Dask LocalCluster versus the same flow with
one task at a time (Prefect's ThreadPoolTaskRunner with one thread), same multi-year window of the
shared data set, same run, against a real local Prefect server. Prints the ratio, checks that both
exports are byte for byte equal, and shows the plain core backfill (one read for the whole window)
for scale.

    uv run python -m bench.dask_backfill [--first 2022-01-01 --last 2023-12-31] [--days-per-task 7]
                                         [--workers 2]

The Dask time includes starting the cluster (worker processes importing Prefect), which is part of
what a run pays. Each run reads its own copy of the file: extract's cache would otherwise serve
the second run from the first one's results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")  # one warning per task otherwise
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # read by the worker processes too

from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from btc_core.observations import Window
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings
from btc_core.testing import shared_csv_path
from btc_core.transform import export
from deployments.stack import pick_port, start_server, stop
from flows.dask_backfill import btc_backfill_dask, dask_task_runner


def run_flow(label: str, run: Callable[[], str], csv: Path, workdir: Path) -> tuple[float, str]:
    """Seconds of one flow run on a fresh copy of ``csv`` into a fresh DuckDB, and its export."""
    copy = workdir / f"{label}.csv"
    shutil.copyfile(csv, copy)
    db = workdir / f"{label}.duckdb"
    os.environ.update({"BTC_REPLAY_FILE": str(copy), "BTC_DB_PATH": str(db)})
    started = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s ({summary})", flush=True)
    return seconds, export(store_for(Settings.from_env()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=date.fromisoformat, default=date(2022, 1, 1))
    parser.add_argument("--last", type=date.fromisoformat, default=date(2023, 12, 31))
    parser.add_argument("--days-per-task", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    args = parser.parse_args(argv)
    csv = shared_csv_path()
    if csv is None:
        print("shared data not found (set BTC_SHARED_DATA): nothing to compare")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="btc-bench-dask-"))
    port = pick_port(4400)
    server = start_server(workdir / "prefect-home", port, workdir / "server.log")
    os.environ.update({"BTC_NOTIFY": "none", "BTC_ARTIFACTS": "none"})
    # Prefect's settings through its context (Prefect read the environment at import); the task
    # runners pass that context on to their threads and to the Dask worker processes.
    prefect_settings = temporary_settings(
        {
            PREFECT_API_URL: f"http://127.0.0.1:{port}/api",
            PREFECT_LOCAL_STORAGE_PATH: workdir / "results",
        }
    )
    days = (args.last - args.first).days + 1
    tasks = -(-days // args.days_per_task)
    print(
        f"{days} days ({args.first} .. {args.last}), {args.days_per_task} day(s) per task: "
        f"{tasks} extracts + {tasks} loads; {os.cpu_count()} cpus",
        flush=True,
    )
    try:
        with prefect_settings:
            params = {"start": args.first, "end": args.last, "days_per_task": args.days_per_task}
            sequential = btc_backfill_dask.with_options(
                task_runner=ThreadPoolTaskRunner(max_workers=1)
            )
            dask = btc_backfill_dask.with_options(task_runner=dask_task_runner(args.workers))
            seq_s, seq_out = run_flow("sequential", lambda: sequential(**params), csv, workdir)
            dask_s, dask_out = run_flow(
                f"dask-{args.workers}", lambda: dask(**params), csv, workdir
            )
            plain = Settings.from_env(env={}, db_path=workdir / "plain.duckdb", replay_file=csv)
            started = time.perf_counter()
            backfill(plain, Window.days(args.first, args.last))
            plain_s = time.perf_counter() - started
            same = seq_out == dask_out == export(store_for(plain))
    finally:
        stop(server.pid, sigints=1)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"dask ({args.workers} workers) {dask_s:.1f} s vs sequential {seq_s:.1f} s -> ratio "
        f"{dask_s / seq_s:.2f} (speed-up x{seq_s / dask_s:.2f}); plain core backfill of the same "
        f"window {plain_s:.2f} s; exports {'identical' if same else 'DIFFERENT'}"
    )
    return 0 if same else 1


if __name__ == "__main__":  # Dask's worker processes re-import __main__
    sys.exit(main())
