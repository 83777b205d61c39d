"""Reading runs back through the Prefect API, as a person would in the UI."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

import prefect.deployments
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, Log, TaskRun
from prefect.settings import PREFECT_API_URL, temporary_settings

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def run_deployment(
    client: SyncPrefectClient, name: str, timeout_s: float = 180, **parameters
) -> FlowRun:
    """Prefect's ``run_deployment`` against ``client``'s server: a run of ``flow/deployment``
    now, read every 0.5 s (Prefect's default: 5 s) until it is final; TimeoutError if not."""
    api_url = str(client.api_url).rstrip("/")
    with temporary_settings({PREFECT_API_URL: api_url}):
        run = prefect.deployments.run_deployment(
            name, parameters=parameters, timeout=timeout_s, poll_interval=0.5, as_subflow=False
        )
    if not (run.state and run.state.is_final()):
        raise TimeoutError(f"{name}: run {run.id} still {run.state} after {timeout_s} s")
    return run


def completed_run(
    client: SyncPrefectClient, name: str, timeout_s: float = 180, **parameters
) -> FlowRun:
    """``run_deployment``, failing the test with the run's final state (and its message) unless
    it is Completed."""
    run = run_deployment(client, name, timeout_s, **parameters)
    assert run.state is not None and run.state.name == "Completed", f"{name}: {run.state}"
    return run


def wait(client: SyncPrefectClient, flow_run_id: UUID, timeout_s: float = 180) -> FlowRun:
    """A run the test created itself (scheduled for later, crashed on purpose, or behind the HA
    balancer), once final: read every 0.5 s, as ``run_deployment`` does. Prefect's event-based
    ``wait_for_flow_run`` (deployments/runs.py) saw the Completed state 2.5 s after it was set
    in bench.prefect_cost (docs/COMPARISON.md, section 5): in tests a read is quicker."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.type.value in FINAL:
            return run
        time.sleep(0.5)
    raise TimeoutError(
        f"flow run {flow_run_id} still {run.state.name if run.state else '?'} after {timeout_s} s"
    )


def all_task_runs(client: SyncPrefectClient, flow_run_id: UUID) -> list[TaskRun]:
    return client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )


def task_runs(client: SyncPrefectClient, flow_run_id: UUID) -> dict[str, TaskRun]:
    """Task runs by task name, without Prefect's random suffix (for flows that call each task
    once)."""
    return {r.name.rsplit("-", 1)[0]: r for r in all_task_runs(client, flow_run_id)}


def state_names(client: SyncPrefectClient, task_run: TaskRun) -> list[str]:
    return [s.name for s in client.read_task_run_states(task_run.id)]


def logs(client: SyncPrefectClient, flow_run_id: UUID) -> list[Log]:
    return client.read_logs(
        LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
    )


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``check()`` holds (read every 0.2 s); TimeoutError naming ``what``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started
