"""What the code's pull step adds to a deployment's trigger -> Completed on a process worker
(BTC_CODE_SOURCE, docs/hybrid.md): btc-hourly with git_clone of the deployed commit (the local
stack's default, from this checkout's repository) and with pull_from_s3 (from moto's S3 server on
127.0.0.1), against the baseline measured in the same run: the same deployment with Prefect's
default pull step, ``set_working_directory`` to this folder. One worker polling every 0.5 s (as
``make up``'s); runs alternate between the three, medians after one warm-up round.

Deploys as ``make up`` does (deployments/deploy.py) on a server of its own (SQLite, temporary
PREFECT_HOME), once per source, and copies each btc-hourly under a name of its own; stops
everything before returning. Runs the committed code (git_clone clones HEAD).

    uv run python -m bench.code_pull [--runs 7]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
from moto.server import ThreadedMotoServer
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from btc_core.settings import PROJECT_ROOT
from deployments.deploy import setup_and_deploy
from deployments.processes import prefect_env, start_server, start_worker, stop
from deployments.runs import run_now
from deployments.stack import DEFAULT_POLL_S
from infra.ports import pick_port

GOAL_S = 2.5  # make up's trigger -> Completed
BUCKET = "btc-code"  # prefect.yaml's code_sources.s3
PATH_PULL = [{"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}]


def latency(api_url: str, deployment: str) -> tuple[float, float]:
    """Seconds from creating a run of ``deployment`` to seeing it Completed, and seconds of its
    pull steps alone (between the run's log lines before and after them)."""
    started = time.perf_counter()
    run = run_now(api_url, deployment)
    if not (run.state and run.state.is_completed()):
        raise RuntimeError(f"{deployment} run {run.id} ended {run.state}")
    return time.perf_counter() - started, pull_seconds(api_url, run.id)


def pull_seconds(api_url: str, run_id: UUID, timeout_s: float = 30) -> float:
    """Seconds between the log lines around the pull steps of a run, stamped by the flow-run
    process; its last logs reach the API after the Completed state, so they are waited for."""
    marks = ("deployment pull step(s)", "All deployment steps completed")
    deadline = time.monotonic() + timeout_s
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            stamps = [[log.timestamp for log in logs if mark in log.message] for mark in marks]
            if all(stamps):
                return (stamps[1][0] - stamps[0][0]).total_seconds()
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id}: no log lines around its pull steps")
            time.sleep(0.5)


def copy_btc_hourly(api_url: str, name: str, pull_steps: list[dict[str, Any]] | None) -> str:
    """btc-hourly under ``name``, with ``pull_steps`` (None: its own); returns flow/name."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        hourly = client.read_deployment_by_name("btc-pipeline/btc-hourly")
        client.create_deployment(
            flow_id=hourly.flow_id,
            name=name,
            entrypoint=hourly.entrypoint,
            work_pool_name=hourly.work_pool_name,
            work_queue_name=hourly.work_queue_name,
            parameter_openapi_schema=hourly.parameter_openapi_schema,
            pull_steps=hourly.pull_steps if pull_steps is None else pull_steps,
        )
    return f"btc-pipeline/{name}"


def deploy_btc_hourly(home: Path, api_url: str, **env: str) -> None:
    """``python -m deployments.deploy --name btc-hourly`` with ``env`` (BTC_CODE_SOURCE, AWS_*)."""
    subprocess.run(
        [sys.executable, "-m", "deployments.deploy", "--name", "btc-hourly"],
        env=prefect_env(home, api_url, **env),
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )


def measure(runs: int, workdir: Path) -> dict[str, list[tuple[float, float]]]:
    """Latencies and pull-step times per pull step, alternating runs, on a server and an S3
    server of its own."""
    home, port = workdir / "prefect-home", pick_port(4460)
    api_url = f"http://127.0.0.1:{port}/api"
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: no line per request
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, s3_port = s3.get_host_and_port()
    aws = {
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{s3_port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=aws["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
    ).create_bucket(Bucket=BUCKET)
    server = start_server(home, port, workdir / "server.log")
    worker = None
    try:
        setup_and_deploy(home, api_url, docker=False)  # as make up: BTC_CODE_SOURCE's default
        kinds = {
            "set_working_directory (baseline)": copy_btc_hourly(api_url, "bench-path", PATH_PULL),
            "git_clone (BTC_CODE_SOURCE=git)": copy_btc_hourly(api_url, "bench-git", None),
        }
        deploy_btc_hourly(home, api_url, BTC_CODE_SOURCE="s3", **aws)
        kinds["pull_from_s3 (BTC_CODE_SOURCE=s3)"] = copy_btc_hourly(api_url, "bench-s3", None)
        env = {"BTC_DB_PATH": str(workdir / "btc.duckdb"), "BTC_NOTIFY": "none", **aws}
        log = workdir / "worker.log"
        worker = start_worker(home, api_url, "btc-process", log, DEFAULT_POLL_S, **env)
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in kinds}
        for i in range(runs + 1):  # the first round warms up (imports, first DuckDB file)
            for label, deployment in kinds.items():
                measured = latency(api_url, deployment)
                if i:
                    results[label].append(measured)
        return results
    finally:
        if worker is not None:
            stop(worker.pid, sigints=2)
        stop(server.pid, sigints=1)
        s3.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    cores = os.cpu_count()
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="btc-code-pull-") as workdir:
        for label, measured in measure(args.runs, Path(workdir)).items():
            latencies = [seconds for seconds, _ in measured]
            medians[label] = statistics.median(latencies)
            pull_ms = statistics.median(pull for _, pull in measured) * 1000
            spread = ", ".join(f"{m:.2f}" for m in latencies)
            print(
                f"{label}: median {medians[label]:.2f} s trigger -> Completed, pull step "
                f"{pull_ms:.0f} ms  [{spread}]"
            )
    (_, base), *pulls = medians.items()
    for label, median in pulls:
        print(
            f"{label.split(' ')[0]} vs set_working_directory: ratio {median / base:.2f} "
            f"({(median - base) * 1000:+.0f} ms); goal <= {GOAL_S:g} s: "
            f"{'OK' if median <= GOAL_S else 'OVER'}"
        )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {cores} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
