"""Dask backfill benchmark: ``btc_backfill_dask`` on a Dask LocalCluster versus the same flow with
one task at a time (Prefect's ThreadPoolTaskRunner with one thread), same multi-year window of the
shared data set, same run, against a real local Prefect server. Prints the ratio, checks that both
exports are byte for byte equal to the plain core backfill's, whose time it shows for scale.

    uv run python -m bench.dask_backfill [--first 2022-01-01 --last 2023-12-31] [--days-per-task 7]
                                         [--workers 2] [--latency-ms 0]

``--latency-ms N`` extracts from the local fake CoinGecko (serving the same shared data) answering
after N ms, the shape of a real backfill from a remote API, instead of replaying the file. The Dask
time includes starting the cluster (worker processes importing Prefect), which every run pays.
Each run has its own result storage, so extract's cache never serves one run from another.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")  # one warning per task otherwise
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # read by the worker processes too

from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from btc_core.fake_api import FakeApi
from btc_core.observations import Window
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings, shared_csv_path
from btc_core.transform import export
from deployments.processes import start_server, stop
from flows.dask_backfill import btc_backfill_dask, dask_task_runner
from infra.ports import pick_port


def run_flow(label: str, run: Callable[[], str], workdir: Path, api_url: str) -> tuple[float, str]:
    """Seconds of one flow run into a fresh DuckDB, with fresh result storage, and its export."""
    os.environ["BTC_DB_PATH"] = str(workdir / f"{label}.duckdb")
    # Prefect's settings go through its context (Prefect read the environment at import); task
    # runners pass that context on to their threads and to the Dask worker processes.
    with temporary_settings(
        {PREFECT_API_URL: api_url, PREFECT_LOCAL_STORAGE_PATH: workdir / f"{label}-results"}
    ):
        started = time.perf_counter()
        summary = run()
        seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s ({summary})", flush=True)
    return seconds, export(store_for(Settings.from_env()))


def compare(args: argparse.Namespace, csv: Path, workdir: Path, api_url: str) -> bool:
    """Sequential, then Dask, then the plain core backfill; print the ratio; True if all equal."""
    params = {"start": args.first, "end": args.last, "days_per_task": args.days_per_task}
    sequential = btc_backfill_dask.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    dask = btc_backfill_dask.with_options(task_runner=dask_task_runner(args.workers))
    seq_s, seq_out = run_flow("sequential", lambda: sequential(**params), workdir, api_url)
    dask_s, dask_out = run_flow(f"dask-{args.workers}", lambda: dask(**params), workdir, api_url)
    plain = Settings.from_env(db_path=workdir / "plain.duckdb")
    started = time.perf_counter()
    backfill(plain, Window.days(args.first, args.last))
    plain_s = time.perf_counter() - started
    same = seq_out == dask_out == export(store_for(plain))
    print(
        f"dask ({args.workers} workers) {dask_s:.1f} s vs sequential {seq_s:.1f} s -> ratio "
        f"{dask_s / seq_s:.2f} (speed-up x{seq_s / dask_s:.2f}); plain core backfill "
        f"{plain_s:.2f} s; exports {'identical' if same else 'DIFFERENT'}",
        flush=True,
    )
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=date.fromisoformat, default=date(2022, 1, 1))
    parser.add_argument("--last", type=date.fromisoformat, default=date(2023, 12, 31))
    parser.add_argument("--days-per-task", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="fake CoinGecko instead of replay"
    )
    args = parser.parse_args(argv)
    csv = shared_csv_path()
    if csv is None:
        print("shared data not found (set BTC_SHARED_DATA): nothing to compare")
        return 1
    days = (args.last - args.first).days + 1
    tasks = -(-days // args.days_per_task)
    source = f"fake CoinGecko, {args.latency_ms} ms a request" if args.latency_ms else "replay"
    print(
        f"{days} days ({args.first} .. {args.last}), {args.days_per_task} day(s) per task: "
        f"{tasks} extracts + {tasks} loads; {source}; {os.cpu_count()} cpus",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="btc-bench-dask-"))
    port = pick_port(4400)
    server = start_server(workdir / "prefect-home", port, workdir / "server.log")
    os.environ.update({"BTC_NOTIFY": "none", "BTC_ARTIFACTS": "none", "BTC_REPLAY_FILE": str(csv)})
    try:
        with ExitStack() as stack:
            if args.latency_ms:
                api = stack.enter_context(FakeApi.start(csv, latency_s=args.latency_ms / 1000))
                os.environ.update(
                    {
                        "BTC_SOURCE": "coingecko",
                        "BTC_FAILOVER_SOURCE": "none",
                        "BTC_COINGECKO_URL": f"{api.url}/coingecko",
                    }
                )
            same = compare(args, csv, workdir, f"http://127.0.0.1:{port}/api")
    finally:
        stop(server.pid, sigints=1)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":  # Dask's worker processes re-import __main__
    sys.exit(main())
