"""Runs per minute through the HA control plane: one API replica against two, in the same run.

Brings up its own stack (``python -m deployments.ha up --own-redis`` on a scratch PostgreSQL
database) and one process worker (pool limit 4), then alternates two settings: HAProxy sends
every request to api1 (api2 in maintenance through HAProxy's runtime API), or to both replicas.
Each round pushes ``--runs`` runs of btc-hourly at once; runs per minute = runs / (first created
-> last Completed). Medians over ``--rounds`` rounds per setting, interleaved (the order flips
each round), after a warm-up round.

    uv run python -m bench.ha_throughput [--runs 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from deployments.deploy import prefect_cli
from deployments.ha import REPLICAS, HaStack, Ports, down, free_ports, haproxy_command, up
from deployments.postgres import postgres_url, scratch_database
from deployments.processes import start_worker, stop
from deployments.runs import start_run, wait_for_end

SETTINGS = {"one replica": "maint", "two replicas": "ready"}  # the state of api2 in HAProxy


def runs_per_minute(stack: HaStack, n: int) -> float:
    """Push ``n`` runs at once and wait for all; fail on any run that does not complete."""
    started = time.monotonic()
    runs = [start_run(stack.api_url, "btc-pipeline/btc-hourly") for _ in range(n)]
    states = [wait_for_end(stack.api_url, run.id, timeout_s=900).state_name for run in runs]
    if set(states) != {"Completed"}:
        raise SystemExit(f"runs ended {sorted(set(states))}: see the worker's log")
    return n / (time.monotonic() - started) * 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="runs pushed per round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per setting")
    args = parser.parse_args()
    results: dict[str, list[float]] = {label: [] for label in SETTINGS}
    with (
        tempfile.TemporaryDirectory(prefix="btc-ha-bench-") as tmp,
        scratch_database("btc_ops_bench") as database,
    ):
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres_url(database)
        folder = Path(tmp) / "ha"
        stack = up(folder, Ports.starting_at(free_ports(4760, 7)), own_redis=True)
        worker = None
        try:
            prefect_cli(stack.home, stack.api_url, "deployment", "schedule", "pause", "--all")
            prefect_cli(
                stack.home, stack.api_url, "work-pool", "set-concurrency-limit", "btc-process", "4"
            )
            worker = start_worker(
                stack.home,
                stack.api_url,
                "btc-process",
                Path(tmp) / "worker.log",
                1.0,
                BTC_DB_PATH=str(Path(tmp) / "btc.duckdb"),
                BTC_NOTIFY="none",
                BTC_ARTIFACTS="summary",
                BTC_CHART="none",
            )
            runs_per_minute(stack, args.runs)  # warm-up
            for i in range(args.rounds):
                order = list(SETTINGS) if i % 2 == 0 else list(reversed(SETTINGS))
                for label in order:
                    haproxy_command(
                        stack, f"set server prefect_api/{REPLICAS[1]} state {SETTINGS[label]}"
                    )
                    time.sleep(3)  # HAProxy applies it at once; let in-flight requests drain
                    results[label].append(runs_per_minute(stack, args.runs))
                    print(f"round {i + 1}, {label}: {results[label][-1]:.1f} runs/min", flush=True)
        finally:
            if worker:
                stop(worker.pid, sigints=2)
            down(folder)
    one, two = (statistics.median(results[label]) for label in SETTINGS)
    print(f"{args.runs} runs per round, {args.rounds} rounds per setting, medians:")
    print(f"one replica : {one:6.1f} runs/min")
    print(f"two replicas: {two:6.1f} runs/min  (ratio {two / one:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
