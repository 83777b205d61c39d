"""A stopped worker leaves no run Running, and the stack stops only what it started.

- ``workers/stop-worker.sh``: an idle worker stops in about 2 s with no SIGKILL; a busy one's run
  ends Crashed at once (its flow-run process gets SIGTERM first: Prefect 3.9's worker SIGKILLs
  the flow-run processes it stops with, and nothing then reports their runs).
- SIGTERM or SIGINT to a busy worker: Prefect leaves the run Running; the zombie automation
  marks it Crashed one window after its last heartbeat, also when ``make up`` ran again in
  between (the automation is updated in place only when it changed, so it remembers).
- ``make down`` after ``stack server`` brought a dead server back: the workers are still known and
  stopped; a recorded PID that is no longer the process the stack started is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import psutil
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from btc_core.settings import PROJECT_ROOT
from deployments import stack
from deployments.processes import prefect_env, start_worker
from deployments.setup import ZOMBIE_AFTER_S, ensure_automations, process_job_template
from infra.ports import pick_port
from tests.crash import pausing_env, wait_for_pause
from tests.prefect.conftest import Server
from tests.prefect.helpers import wait
from tests.prefect.templates import seed_sqlite

pytestmark = pytest.mark.integration
POOL = "btc-lifecycle"  # a pool of these tests' own: the package's process worker polls btc-process
STOP_WORKER = PROJECT_ROOT / "workers" / "stop-worker.sh"
START_WORKER = PROJECT_ROOT / "workers" / "start-process-worker.sh"
# Zombie window of these tests: the killed runs sent their heartbeat at start, a second or two
# before the kill; the server evaluates proactive triggers every 5 s.
ZOMBIE_S = 15
# What `cmd &` in a script does to cmd: SIGINT ignored, which stays ignored across exec.
IGNORING_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


@pytest.fixture(scope="module")
def deployment(prefect_server: Server) -> UUID:
    """btc-pipeline on a process pool of its own, from the btc-hourly deployment."""
    with prefect_server.client() as client:
        client.create_work_pool(
            WorkPoolCreate(name=POOL, type="process", base_job_template=process_job_template()),
            overwrite=True,
        )
        hourly = client.read_deployment_by_name("btc-pipeline/btc-hourly")
        return client.create_deployment(
            flow_id=hourly.flow_id,
            name="btc-lifecycle",
            work_pool_name=POOL,
            entrypoint=hourly.entrypoint,
            path=hourly.path,
            pull_steps=hourly.pull_steps,
            parameter_openapi_schema=hourly.parameter_openapi_schema,
        )


def worker_env(server: Server, tmp_path: Path) -> dict[str, str]:
    """Each load pauses 120 s inside its transaction (tests/crash.py): a run stays in flight."""
    base = prefect_env(
        server.home, server.api_url, BTC_DB_PATH=str(tmp_path / "btc.duckdb"), BTC_NOTIFY="none"
    )
    return pausing_env(120, base)


def script_worker(
    env: dict[str, str], log: Path, *, sigint_ignored: bool = False
) -> subprocess.Popen:
    """``workers/start-process-worker.sh btc-lifecycle`` as a user starts it (``uv run``), once
    its worker said it started; ``sigint_ignored``: as a script's background job starts it."""
    proc = subprocess.Popen(
        [*(IGNORING_SIGINT if sigint_ignored else []), str(START_WORKER), POOL],
        env={**env, "BTC_WORKER_POLL_S": "1"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while "started!" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    return proc


def stop_with_script(proc: subprocess.Popen, grace_s: int = 20) -> tuple[float, str]:
    """``workers/stop-worker.sh PID``: its wall time and its stderr."""
    started = time.monotonic()
    done = subprocess.run(
        [str(STOP_WORKER), str(proc.pid)],
        env={**os.environ, "STOP_GRACE_S": str(grace_s)},
        capture_output=True,
        text=True,
        timeout=3 * grace_s,
    )
    took = time.monotonic() - started
    proc.wait(10)
    return took, done.stderr


@pytest.fixture
def cleanup() -> Iterator[list[int]]:
    """PIDs of process groups a test started, killed if the test left them running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_stop_worker_sh_stops_an_idle_worker_without_sigkill(
    prefect_server, tmp_path, cleanup, figure
):
    log = tmp_path / "worker.log"
    worker = script_worker(worker_env(prefect_server, tmp_path), log)
    cleanup.append(worker.pid)
    took, stderr = stop_with_script(worker)
    figure(f"stop-worker.sh on an idle worker: {took:.1f} s")
    assert "SIGKILL" not in stderr + log.read_text(), stderr + log.read_text()[-2000:]
    assert took < 10, f"{took:.1f} s"  # it was 7-7.5 s, ending in SIGKILL


def test_stop_worker_sh_stops_a_worker_started_as_a_background_job(
    prefect_server, tmp_path, cleanup
):
    log = tmp_path / "worker.log"
    worker = script_worker(worker_env(prefect_server, tmp_path), log, sigint_ignored=True)
    cleanup.append(worker.pid)
    _, stderr = stop_with_script(worker, grace_s=3)
    assert "SIGKILL" not in stderr, stderr


def test_stop_worker_sh_with_a_run_in_flight_ends_it_crashed_at_once(
    prefect_server, deployment, tmp_path, cleanup, figure
):
    log = tmp_path / "worker.log"
    worker = script_worker(worker_env(prefect_server, tmp_path), log)
    cleanup.append(worker.pid)
    with prefect_server.client() as client:
        run = client.create_flow_run_from_deployment(deployment)
        wait_for_pause(log.read_text)
        took, stderr = stop_with_script(worker)
        ended = wait(client, run.id, timeout_s=5)  # final when the script returns
    figure(f"stop-worker.sh with a run in flight: {took:.1f} s, the run {ended.state.name}")
    assert ended.state.name == "Crashed", ended.state
    assert "SIGKILL" not in stderr + log.read_text(), stderr + log.read_text()[-2000:]


def heartbeat_seen(api_url: str, run_id: UUID) -> bool:
    """The server has stored a heartbeat of ``run_id``."""
    answer = httpx.post(
        f"{api_url}/events/filter",
        json={
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            }
        },
        timeout=10,
    )
    answer.raise_for_status()
    return bool(answer.json()["events"])


def busy_workers(
    server: Server,
    client: SyncPrefectClient,
    deployment: UUID,
    tmp_path: Path,
    names: list[str],
    cleanup: list[int],
) -> list[tuple[subprocess.Popen, UUID, int]]:
    """Workers of the stack (``prefect worker start``), each on a work queue of its own, each with
    a run it is in the middle of and that run's process PID. The runs start together, so their
    heartbeats (sent as they start) are seconds apart at most."""
    started = []
    for name in names:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_queue(name, work_pool_name=POOL)
        (tmp_path / name).mkdir()
        env = worker_env(server, tmp_path / name)
        log = tmp_path / f"{name}.log"
        worker = start_worker(server.home, server.api_url, POOL, log, 1.0, queue=name, **env)
        cleanup.append(worker.pid)
        run = client.create_flow_run_from_deployment(deployment, work_queue_name=name)
        started.append((worker, run.id, log))
    return [(worker, run_id, wait_for_pause(log.read_text)) for worker, run_id, log in started]


def test_sigterm_or_sigint_to_a_busy_worker_leaves_its_run_to_the_zombie_automation(
    prefect_server, deployment, tmp_path, cleanup, figure
):
    """Prefect 3.9 leaves the run Running (upstream: PrefectHQ/prefect#16746, #23016); its last
    heartbeat was before the kill, so the zombie automation marks it Crashed, though ``make up``
    (``ensure_automations``) ran again after the heartbeat."""
    with prefect_server.client() as client:
        ensure_automations(client, None, zombie_after_s=ZOMBIE_S)
        try:
            signals = [signal.SIGTERM, signal.SIGINT]
            names = [sig.name for sig in signals]
            busy = busy_workers(prefect_server, client, deployment, tmp_path, names, cleanup)
            runs = dict(zip(signals, busy, strict=True))
            # The flow process sends its events in the background: a heartbeat not yet delivered
            # when the worker SIGKILLs it is lost, and with no heartbeat the automation never
            # fires (a gap of Prefect's recipe). This test is about the runs whose heartbeat got
            # through, so it waits for them before the signals.
            for _, run_id, _ in runs.values():
                deadline = time.monotonic() + 60
                while not heartbeat_seen(prefect_server.api_url, run_id):
                    assert time.monotonic() < deadline, "no heartbeat of the run reached the server"
                    time.sleep(0.5)
            killed = time.monotonic()
            for sig, (worker, _, _) in runs.items():
                worker.send_signal(sig)
            for worker, run_id, flow_pid in runs.values():
                assert worker.wait(15) == 0
                assert not psutil.pid_exists(flow_pid)  # SIGKILLed by the worker as it stopped
                assert client.read_flow_run(run_id).state.name == "Running"
            ensure_automations(client, None, zombie_after_s=ZOMBIE_S)  # make up, again
            for sig, (_, run_id, _) in runs.items():
                ended = wait(client, run_id, timeout_s=ZOMBIE_S + 30)
                assert ended.state.name == "Crashed", ended.state
                assert f"No heartbeat for {ZOMBIE_S} s" in (ended.state.message or "")
                figure(f"{sig.name}: Crashed {time.monotonic() - killed:.0f} s after the signal")
        finally:
            ensure_automations(client, None, zombie_after_s=ZOMBIE_AFTER_S)


def test_down_stops_the_workers_after_a_server_restart_and_only_its_own_processes(
    tmp_path, cleanup, figure
):
    place = stack.Place(tmp_path / "stack", tmp_path / "prefect", tmp_path / ".env")
    seed_sqlite(place.home)
    port = pick_port(4760)
    first = stack.server(port, place)
    cleanup.append(first.server_pid)
    log = tmp_path / "worker.log"
    worker = start_worker(place.home, first.api_url, POOL, log, 1.0)
    cleanup.append(worker.pid)
    deadline = time.monotonic() + 60
    while "started!" not in log.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    first.worker_pids.append(worker.pid)
    first.save(place.stack_dir)

    # The server dies (with its uvicorn child); `stack server` brings it back on its URL.
    os.killpg(first.server_pid, signal.SIGKILL)
    psutil.Process(first.server_pid).wait(10)
    restarted = time.monotonic()
    again = stack.server(port, place)
    cleanup.append(again.server_pid)
    figure(f"server restarted in {time.monotonic() - restarted:.1f} s")
    assert again.url == first.url and again.server_pid != first.server_pid
    assert again.worker_pids == [worker.pid]

    # A recorded PID that now belongs to another process (PIDs wrap): simulated by recording a
    # process of ours with another start time.
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    cleanup.append(other.pid)
    again.worker_pids.append(other.pid)
    again.save(place.stack_dir)
    recorded = json.loads((place.stack_dir / "stack.json").read_text())
    recorded["identities"][str(other.pid)]["started"] -= 60
    (place.stack_dir / "stack.json").write_text(json.dumps(recorded))

    stack.down(place)
    assert not psutil.pid_exists(worker.pid)
    assert not psutil.pid_exists(again.server_pid)
    assert other.poll() is None, "down signalled a PID that is no longer its process"
    assert stack.Stack.load(place.stack_dir).worker_pids == []
