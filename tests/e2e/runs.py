"""Deployment runs with per-run job variables (the worker host's mounts, env overrides)."""

from __future__ import annotations

import time
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from tests.prefect.helpers import logs, wait


def start(
    client: SyncPrefectClient,
    name: str,
    job_variables: dict[str, Any] | None = None,
    **parameters: Any,
) -> FlowRun:
    """Create a run of ``flow/deployment`` now, without waiting."""
    deployment = client.read_deployment_by_name(name)
    return client.create_flow_run_from_deployment(
        deployment.id, parameters=parameters, job_variables=job_variables
    )


def run(
    client: SyncPrefectClient,
    name: str,
    job_variables: dict[str, Any] | None = None,
    timeout_s: float = 240,
    **parameters: Any,
) -> FlowRun:
    """Create a run now and wait until it is final."""
    return wait(client, start(client, name, job_variables, **parameters).id, timeout_s)


def settle(client: SyncPrefectClient, flow_run: FlowRun, timeout_s: float = 60) -> None:
    """Wait until all that a finished run sends has landed on the server: a run is final before
    its last log lines are shipped and before the event persister writes its final event."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last_log = any(
            log.task_run_id is None and log.message.startswith("Finished in state")
            for log in logs(client, flow_run.id)
        )
        final_event = EventFilter(
            event=EventNameFilter(name=[f"prefect.flow-run.{flow_run.state.name}"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run.id}"]),
        )
        if last_log and client.read_events(final_event, limit=1).events:
            return
        time.sleep(0.5)
    raise TimeoutError(f"logs or events of flow run {flow_run.id} still missing")
