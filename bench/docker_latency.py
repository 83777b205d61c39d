"""Deployment latency on the Docker worker: trigger -> Completed of ``btc-hourly-docker`` (a new
container of the flow image per run), against ``btc-hourly`` on a process worker measured in the
same run as the baseline. Both workers poll every second; runs alternate between the two, medians
after one warm-up run each. Also the flow image's size and (cached) build time.

Starts its own server (SQLite, temporary PREFECT_HOME) and workers, stops them before returning.
Needs a Docker daemon (``sudo infra/provision.sh``).

    uv run python -m bench.docker_latency [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from deployments.deploy import setup_and_deploy
from deployments.processes import start_server, start_worker, stop
from deployments.runs import run_now
from infra.image import build
from infra.ports import pick_port

FLOW_UID = 10001  # the flow image's user (infra/Dockerfile)
TARGET_S = 8.0
QUIET = {"BTC_NOTIFY": "none"}


def latency(api_url: str, deployment: str, job_variables: dict) -> float:
    """Seconds from creating a run of ``deployment`` to seeing it Completed."""
    started = time.perf_counter()
    run = run_now(api_url, deployment, job_variables=job_variables)
    if not (run.state and run.state.is_completed()):
        raise RuntimeError(f"{deployment} run {run.id} ended {run.state}")
    return time.perf_counter() - started


def measure(runs: int, workdir: Path) -> dict[str, list[float]]:
    """Latencies per worker kind, alternating runs, on a server of its own."""
    home, data = workdir / "prefect-home", workdir / "docker-data"
    data.mkdir(parents=True)
    os.chown(data, FLOW_UID, FLOW_UID)
    port = pick_port(4450)
    api_url = f"http://127.0.0.1:{port}/api"
    server = start_server(home, port, workdir / "server.log")
    kinds = {
        "process worker (btc-hourly)": ("btc-pipeline/btc-hourly", {"env": QUIET}),
        "Docker worker (btc-hourly-docker)": (
            "btc-pipeline/btc-hourly-docker",
            {"env": QUIET, "volumes": [f"{data}:/data"]},
        ),
    }
    workers = []
    try:
        setup_and_deploy(home, api_url)
        for pool in ("btc-process", "btc-docker"):
            log = workdir / f"{pool}.log"
            env = {"BTC_DB_PATH": str(workdir / "process.duckdb"), **QUIET}
            workers.append(start_worker(home, api_url, pool, log, 1.0, **env))
        results: dict[str, list[float]] = {label: [] for label in kinds}
        for i in range(runs + 1):  # the first round warms up (imports, first DuckDB file)
            for label, (deployment, job_variables) in kinds.items():
                seconds = latency(api_url, deployment, job_variables)
                if i:
                    results[label].append(seconds)
        return results
    finally:
        for worker in workers:
            stop(worker.pid, sigints=2)
        stop(server.pid, sigints=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"flow image {build().summary()} (layers cached when unchanged)", flush=True)
    medians = {}
    for label, measured in measure(args.runs, Path(tempfile.mkdtemp(prefix="btc-docker-"))).items():
        medians[label] = statistics.median(measured)
        spread = ", ".join(f"{m:.1f}" for m in measured)
        print(f"{label}: median {medians[label]:.2f} s trigger -> Completed  [{spread}]")
    process, docker = medians.values()
    print(
        f"Docker vs process worker: ratio {docker / process:.2f}; Docker target <= {TARGET_S:g} s: "
        f"{'OK' if docker <= TARGET_S else 'OVER'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
