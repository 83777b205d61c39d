"""Start a deployment's run and wait for its end, with Prefect's own client and event stream."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import wait_for_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings


def start_run(api_url: str, deployment: str, **create: Any) -> FlowRun:
    """Create a run of ``flow/deployment`` now (``create``: parameters, job_variables, ...)."""
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.create_flow_run_from_deployment(found.id, **create)


def wait_for_end(api_url: str, run_id: UUID, timeout_s: float = 300) -> FlowRun:
    """The run once it is final (``wait_for_flow_run`` listens to the server's events)."""
    with temporary_settings({PREFECT_API_URL: api_url}):
        return asyncio.run(wait_for_flow_run(run_id, timeout=int(timeout_s)))


def run_now(api_url: str, deployment: str, timeout_s: float = 300, **create: Any) -> FlowRun:
    """:func:`start_run`, then :func:`wait_for_end`."""
    return wait_for_end(api_url, start_run(api_url, deployment, **create).id, timeout_s)


def stop_schedules(client: SyncPrefectClient) -> None:
    """Only the runs started on purpose (a test's, a benchmark's): deactivate every schedule and
    delete the runs already scheduled (a btc-interval run on a quarter hour would land in the
    middle of a measurement)."""
    for deployment in client.read_deployments():
        for schedule in deployment.schedules:
            client.update_deployment_schedule(deployment.id, schedule.id, active=False)
    scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
    for flow_run in client.read_flow_runs(flow_run_filter=FlowRunFilter(state=scheduled)):
        client.delete_flow_run(flow_run.id)
