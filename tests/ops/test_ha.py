"""kill -9 of an API replica while a stream of deployment runs goes through the balancer: every
run completes once, the UI keeps answering, and the replica comes back and takes traffic."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import StateType

from deployments.ha import backend_servers, program_pids
from tests.ops.conftest import Ha
from tests.prefect.helpers import all_task_runs, wait

pytestmark = pytest.mark.integration

RUNS = 20
KILL_AFTER = 8  # runs created before the kill


def ui_answers(ha: Ha) -> list[int]:
    """What a browser on the UI asks for: the page, and the runs list through the API."""
    page = httpx.get(f"{ha.stack.url}/", timeout=10)
    runs = httpx.post(f"{ha.stack.api_url}/flow_runs/filter", json={"limit": 5}, timeout=10)
    return [page.status_code, runs.status_code]


def wait_until(predicate, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s:.0f} s"
        time.sleep(0.5)
    return time.monotonic() - started


def test_ha_kill_9_of_a_replica_loses_and_duplicates_no_run(ha: Ha):
    ha.worker()
    folder, tag = ha.stack.folder, f"ha-{uuid.uuid4().hex[:8]}"
    victim = program_pids(folder)["api1"]
    downs_before = int(backend_servers(ha.stack)["api1"]["chkdown"])
    created, in_flight, answers = [], 0, []
    with ha.server.client() as client:
        deployment = client.read_deployment_by_name("btc-pipeline/btc-hourly")
        for i in range(RUNS):
            if i == KILL_AFTER:
                os.kill(victim, signal.SIGKILL)
                killed_at = time.time()
                in_flight = sum(
                    not client.read_flow_run(run_id).state.is_final() for run_id in created
                )
                answers += ui_answers(ha)
            run = client.create_flow_run_from_deployment(
                deployment.id, tags=[tag], idempotency_key=f"{tag}-{i}"
            )
            created.append(run.id)
            if i > KILL_AFTER:
                answers += ui_answers(ha)
            time.sleep(0.5)
        final = [wait(client, run_id, timeout_s=400) for run_id in created]
        tagged = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        )
        running_states = {
            run.id: sum(s.type == StateType.RUNNING for s in client.read_flow_run_states(run.id))
            for run in final
        }
        # Task runs reach the database as events (websocket -> replica -> Redis -> services):
        # every one of them arrives, some seconds after their run is final.
        wait_until(
            lambda: all(len(all_task_runs(client, run.id)) == 3 for run in final),
            60,
            "3 task runs (extract, load, notify) recorded for every run",
        )
    print(
        f"\nops: {RUNS} runs pushed, {KILL_AFTER} before the kill ({in_flight} of them not "
        f"final yet), {RUNS - KILL_AFTER} after; lost {RUNS - len(tagged)}"
    )
    assert [r.state.name for r in final] == ["Completed"] * RUNS
    assert sorted(r.id for r in tagged) == sorted(created)  # none lost, none extra
    assert set(running_states.values()) == {1}  # each ran exactly once
    assert set(answers) == {200}  # the UI answered through HAProxy all along

    # supervisord started the replica again; HAProxy saw it go down, come back and serve.
    wait_until(lambda: backend_servers(ha.stack)["api1"]["status"] == "UP", 120, "api1 UP")
    restarted = program_pids(folder)["api1"]
    assert restarted != victim
    row = backend_servers(ha.stack)["api1"]
    up_after = time.time() - int(row["lastchg"]) - killed_at  # lastchg: seconds in this status
    assert int(row["chkdown"]) > downs_before
    served = int(row["stot"])
    for _ in range(10):
        assert ui_answers(ha) == [200, 200]
    assert int(backend_servers(ha.stack)["api1"]["stot"]) > served
    print(
        f"ops: api1 killed (PID {victim}), restarted as PID {restarted}, UP in HAProxy "
        f"{up_after:.0f} s after the kill, and serving (the stack came up in {ha.up_seconds:.0f} s)"
    )
