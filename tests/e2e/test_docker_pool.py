"""The Docker work pool: a run in a container of the flow image, data on the worker's volume,
task results in S3; a Docker worker killed during a run, and its whole machine dying."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.client.schemas.objects import FlowRun

from deployments.processes import stop
from tests.e2e.conftest import ZOMBIE_AFTER_S, docker_worker_settings
from tests.e2e.hosts import (
    CONTAINER_HOOKS,
    S3,
    WorkerHost,
    export_of,
    flow_run_containers,
    kill_flow_run_containers,
    plain_cycle_export,
)
from tests.e2e.runs import run, start
from tests.plugin import WebhookSink
from tests.prefect.conftest import Server
from tests.prefect.helpers import task_runs, wait

pytestmark = pytest.mark.integration
DEPLOYMENT = "btc-pipeline/btc-hourly-docker"


@pytest.fixture(scope="module")
def plain_export(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same cycle with no orchestrator: what every Docker run must produce."""
    return plain_cycle_export(tmp_path_factory.mktemp("plain"))


def wait_for_line(log: Path, text: str, offset: int, timeout_s: float = 180) -> str:
    """The first line of ``log`` after byte ``offset`` that contains ``text``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_bytes()[offset:].decode(errors="replace").splitlines():
            if text in line:
                return line
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} never appeared in {log}")


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def docker_worker_for(server: Server) -> subprocess.Popen:
    return server.worker(pool="btc-docker", poll_s=1.0, **docker_worker_settings())


def docker_workers(server: Server) -> list[subprocess.Popen]:
    """The server's Docker workers that are still running."""
    return [w for w in server.workers if "btc-docker" in w.args and w.poll() is None]


def log_of(server: Server, worker: subprocess.Popen) -> Path:
    return server.logs / f"worker-{server.workers.index(worker)}.log"


@pytest.fixture
def doomed_docker_worker(hybrid_server: Server, flow_image) -> Iterator[subprocess.Popen]:
    """The pool's only Docker worker, for a test that kills it; a fresh one takes over after."""
    for worker in docker_workers(hybrid_server):
        stop(worker.pid, sigints=2)
    yield docker_worker_for(hybrid_server)
    if not docker_workers(hybrid_server):
        docker_worker_for(hybrid_server)


def result_key(flow_run: FlowRun, client, task: str) -> str:
    """Where a task's persisted result went: the storage key of its final state."""
    state = task_runs(client, flow_run.id)[task].state
    return state.data.storage_key


def test_a_docker_pool_run_completes_on_the_volume_with_results_in_s3(
    hybrid_server,
    docker_worker,
    docker_host: WorkerHost,
    flow_image,
    s3: S3,
    webhook_sink: WebhookSink,
    plain_export: str,
):
    with hybrid_server.client() as client:
        template = client.read_work_pool("btc-docker").base_job_template["variables"]
        defaults = {k: v.get("default") for k, v in template["properties"].items()}
        assert defaults["image"] == flow_image.image and not flow_image.image.endswith(":latest")
        assert (defaults["image_pull_policy"], defaults["network_mode"]) == ("IfNotPresent", "host")
        flow_run = run(client, DEPLOYMENT, docker_host.job_variables())
        assert flow_run.state.name == "Completed", flow_run.state.message
        extract_key = result_key(flow_run, client, "extract")
    assert docker_host.counts() == (2208, 2208)
    assert export_of(docker_host.db) == plain_export
    assert any(key.endswith(extract_key) for key in s3.object_keys()), (
        extract_key,
        s3.object_keys(),
    )
    path, body = webhook_sink.received[-1]
    assert path.startswith("/services/T") and body["text"].startswith("BTC daily average")
    assert wait_until(lambda: not flow_run_containers(flow_run.id)), "auto_remove: none is left"


def pausing(seconds: float) -> dict[str, str]:
    """worker.env lines that make the flow container's loads pause (the crash-drill hook)."""
    return {"BTC_TEST_PAUSE_BEFORE_COMMIT_S": f"{seconds:g}", "PYTHONPATH": CONTAINER_HOOKS}


def killed_mid_load(
    client, server, worker, strict_env: dict[str, str], tmp_path: Path, pause_s: float
) -> tuple[WorkerHost, FlowRun]:
    """A run on a host of its own whose load pauses ``pause_s`` seconds, and its Docker worker
    killed with -9 once the load has begun."""
    host = WorkerHost(tmp_path / "host")
    host.write_env({**strict_env, **pausing(pause_s)})
    flow_run = start(client, DEPLOYMENT, host.job_variables(crash_hook=True))
    wait_for_line(log_of(server, worker), "test hook: PID", 0)
    os.killpg(worker.pid, signal.SIGKILL)
    return host, flow_run


def test_a_killed_docker_worker_leaves_its_container_to_finish_the_run(
    hybrid_server, doomed_docker_worker, strict_env, plain_export: str, tmp_path: Path
):
    with hybrid_server.client() as client:
        host, flow_run = killed_mid_load(
            client, hybrid_server, doomed_docker_worker, strict_env, tmp_path, pause_s=10
        )
        # the container talks to the API itself: it needs no worker to finish and report
        assert wait(client, flow_run.id).state.name == "Completed"
    assert export_of(host.db) == plain_export


def test_the_docker_workers_machine_dying_mid_load_is_crashed_and_a_rerun_repairs(
    hybrid_server, doomed_docker_worker, strict_env, plain_export: str, tmp_path: Path
):
    with hybrid_server.client() as client:
        host, flow_run = killed_mid_load(  # the machine dies: its worker ...
            client, hybrid_server, doomed_docker_worker, strict_env, tmp_path, pause_s=300
        )
        assert kill_flow_run_containers(flow_run.id)  # ... and its containers
        # nobody is left to report: the run stays Running until its heartbeats are missed
        assert client.read_flow_run(flow_run.id).state.name == "Running"
        crashed = wait(client, flow_run.id, timeout_s=ZOMBIE_AFTER_S + 120)
        assert crashed.state.name == "Crashed", crashed.state.message
        assert "heartbeat" in crashed.state.message
        assert not host.db.exists() or host.counts() == (0, 0)
        host.write_env(strict_env)
        docker_worker_for(hybrid_server)  # the machine is back
        for _ in range(2):  # the rerun, and one more: idempotent
            rerun = run(client, DEPLOYMENT, host.job_variables())
            assert rerun.state.name == "Completed", rerun.state.message
    assert host.counts() == (2208, 2208)
    assert export_of(host.db) == plain_export
