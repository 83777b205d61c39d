"""Deployment latency: trigger -> Completed of ``btc-hourly`` through a process worker.

Starts its own server (SQLite, temporary PREFECT_HOME), deploys prefect.yaml, and measures the
median of N runs with Prefect's default worker polling (10 s) and with tuned polling (1 s), in
the same run. Also the plain core on the same data, for the flow's own overhead.

    uv run python -m bench.prefect_latency [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from btc_core.pipeline import run_cycle
from btc_core.settings import Settings
from deployments.stack import pick_port, setup_and_deploy, start_server, start_worker, stop, trigger


def wait_completed(api_url: str, run_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=10).json()["state"]
        if state["type"] == "COMPLETED":
            return
        if state["type"] in ("FAILED", "CRASHED", "CANCELLED"):
            raise RuntimeError(f"run {run_id} ended {state['name']}: {state.get('message')}")
        time.sleep(0.05)
    raise TimeoutError(run_id)


def latencies(api_url: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        wait_completed(api_url, trigger(api_url, "btc-pipeline/btc-hourly"))
        out.append(time.perf_counter() - started)
    return out


def plain_ms(workdir: Path, runs: int) -> float:
    times = []
    for i in range(runs):
        settings = Settings.from_env(env={}, db_path=workdir / f"plain{i}.duckdb", notify="none")
        started = time.perf_counter()
        run_cycle(settings)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


POLLING = (("default polling (10 s)", 10.0), ("tuned polling (1 s)", 1.0))


def measure(runs: int, workdir: Path | None = None) -> dict[str, list[float]]:
    """Seconds trigger -> Completed of ``runs`` runs per worker polling setting (after one
    warm-up run each), on a server of its own that is stopped before returning."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="btc-latency-"))
    home = workdir / "prefect-home"
    port = pick_port(4400)
    server = start_server(home, port, workdir / "server.log")
    api_url = f"http://127.0.0.1:{port}/api"
    results: dict[str, list[float]] = {}
    try:
        setup_and_deploy(home, api_url)
        for label, poll in POLLING:
            worker = start_worker(
                home,
                api_url,
                "btc-process",
                workdir / f"worker-{poll:g}.log",
                poll,
                BTC_DB_PATH=str(workdir / "btc.duckdb"),
                BTC_NOTIFY="none",
            )
            try:
                latencies(api_url, 1)  # warm-up: imports, first DuckDB file
                results[label] = latencies(api_url, runs)
            finally:
                stop(worker.pid, sigints=2)
    finally:
        stop(server.pid, sigints=1)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="btc-latency-"))
    results: dict[str, float] = {}
    for label, measured in measure(args.runs, workdir).items():
        results[label] = statistics.median(measured)
        spread = ", ".join(f"{m:.1f}" for m in measured)
        print(
            f"{label}: median {results[label]:.2f} s trigger -> Completed  [{spread}]", flush=True
        )
    base = plain_ms(workdir, args.runs)
    default, tuned = results.values()
    print(f"plain core (same data, no orchestrator): {base:.0f} ms")
    print(
        f"tuned vs default polling: ratio {tuned / default:.2f}; tuned target <= 4 s: "
        f"{'OK' if tuned <= 4.0 else 'OVER'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
