"""The warm path: a long-lived process that runs the pipeline the moment it is asked.

    python -m flows.warm          # PREFECT_API_URL from the environment or the project's .env

A deployment run starts a new flow-run process every time (imports, a fresh API client, then the
run): seconds of latency, and complete isolation between runs. This process pays the start-up
once and then waits, with two of Prefect's own push mechanisms instead of polling:

- **API call**: it is a task worker (``prefect.task_worker``) serving the background task
  ``btc-refresh``; anyone with API access submits a run with ``btc_refresh.delay()`` and waits
  for ``.result()``. The server pushes the run to this process over a websocket.
- **Event**: it subscribes to the server's event stream (websocket) and runs ``btc-refresh`` for
  every ``btc.replay.updated`` event, e.g. ``prefect event emit btc.replay.updated
  --resource-id btc.replay.demo``.

Each refresh is the same extract -> load -> notify tasks as the ``btc-pipeline`` flow, with the
same retries, cache, failover and artifacts. Choose a deployment (a fresh process per run) when
runs must be isolated from each other or scale out over machines; choose this warm path when the
answer must come within a second. Background-task parameters and results go through result
storage, so the caller and this process must share it (the same machine, or S3 via
``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``).

**No run left Running.** Prefect's zombie rule (docs/hybrid.md) covers flow runs only: a
background task run whose process dies stays Running for good. So this process names its runs
in progress in a ``btc.warm.heartbeat`` event every ``BTC_WARM_HEARTBEAT_S`` (30 s), and every
warm process, at each beat, ends as Crashed the ``btc-refresh`` runs (and their Running child
task runs) that no heartbeat has named for three beats: another warm process, or this one
restarted, cleans up after a ``kill -9`` or a lost host; ``python -m flows.warm --sweep`` does
it once (cron, a systemd timer). On SIGTERM, Prefect's task worker ends the runs in progress
Crashed itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import get_client, task
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType, TaskRun
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.logging import get_logger
from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings
from prefect.states import Crashed
from prefect.task_worker import aserve

from btc_core.settings import Settings
from flows.boundary import guarded
from flows.btc import cycle, runtime_settings

EVENT = "btc.replay.updated"
HEARTBEAT = "btc.warm.heartbeat"
REFRESH = "btc-refresh"
# The server writes events in batches (its event persister flushes every 5 s by default): a beat
# may be that late on the API.
PERSIST_DELAY_S = 10.0
PROCESS = f"btc.warm.{socket.gethostname()}.{os.getpid()}"
log = get_logger("btc.warm")
running: set[UUID] = set()  # the btc-refresh runs in progress in this process


@task(name=REFRESH, persist_result=True)
@guarded
async def btc_refresh(source: str | None = None) -> str:
    """One cycle (extract -> load -> notify) in this warm process; ``source`` overrides
    ``BTC_SOURCE``. The same tasks, retries, cache and artifacts as the ``btc-pipeline`` flow."""
    context = TaskRunContext.get()
    run_id = context.task_run.id if context else None
    if run_id:
        running.add(run_id)
    try:
        return await cycle(await runtime_settings(source=source), None)
    finally:
        running.discard(run_id)


def stale_after(beat_s: float) -> float:
    """Seconds without a heartbeat naming a run after which its process counts as gone."""
    return 3 * beat_s + PERSIST_DELAY_S


async def running_background_runs(client: PrefectClient) -> list[TaskRun]:
    """Every Running task run outside a flow run (background task runs and their children)."""
    return await client.read_task_runs(
        task_run_filter=TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(is_null_=True),
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING])),
        )
    )


async def named_by_heartbeats(client: PrefectClient, since: datetime) -> set[UUID]:
    """The task runs that a warm process's heartbeat since ``since`` names as in progress."""
    page = await client.read_events(
        filter=EventFilter(
            event=EventNameFilter(name=[HEARTBEAT]), occurred=EventOccurredFilter(since=since)
        ),
        limit=50,  # the most the API gives per page
    )
    named: set[UUID] = set()
    while True:
        for event in page.events:
            named.update(UUID(r.id.removeprefix("prefect.task-run.")) for r in event.related)
        if not page.next_page:
            return named
        page = await client.read_events_page(str(page.next_page))


async def crash(client: PrefectClient, roots: set[UUID], runs: list[TaskRun], why: str) -> None:
    """End ``roots`` and their Running descendants among ``runs`` as Crashed."""
    doomed, added = set(roots), True
    while added:  # children name their parent task run in task_inputs["__parents__"]
        before = len(doomed)
        doomed |= {
            r.id
            for r in runs
            if any(p.id in doomed for p in r.task_inputs.get("__parents__", []))  # type: ignore[union-attr]
        }
        added = len(doomed) > before
    for run_id in doomed:
        await client.set_task_run_state(run_id, Crashed(message=why), force=True)
        log.warning("task run %s: Crashed (%s)", run_id, why)


async def sweep(client: PrefectClient, beat_s: float) -> set[UUID]:
    """Crash the btc-refresh runs Running for longer than :func:`stale_after` that no heartbeat
    of that span names (their warm process was killed or its host lost); returns them."""
    limit = stale_after(beat_s)
    since = datetime.now(UTC) - timedelta(seconds=limit)
    runs = await running_background_runs(client)
    old = {r.id for r in runs if r.name == REFRESH and r.start_time and r.start_time < since}
    if not old:
        return set()
    orphans = old - await named_by_heartbeats(client, since)
    await crash(client, orphans, runs, f"its warm process sent no heartbeat for {limit:.0f} s")
    return orphans


async def keep_alive(beat_s: float) -> None:
    """Every ``beat_s``: a heartbeat naming this process's runs in progress, then a sweep."""
    async with get_client() as client:
        while True:
            emit_event(
                event=HEARTBEAT,
                resource={"prefect.resource.id": PROCESS},
                related=[
                    {
                        "prefect.resource.id": f"prefect.task-run.{r}",
                        "prefect.resource.role": "task-run",
                    }
                    for r in running
                ],
            )
            try:
                await sweep(client, beat_s)
            except Exception as exc:  # the API down a moment: the next beat sweeps again
                log.warning("sweep failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(beat_s)


async def on_events(name: str = EVENT) -> None:
    """Run :func:`btc_refresh` for every event called ``name``, as the server pushes them."""
    events = EventFilter(event=EventNameFilter(name=[name]))
    async with get_events_subscriber(filter=events, reconnect_on_clean_close=True) as stream:
        async for event in stream:
            log.info("event %s (%s): refreshing", event.event, event.resource.id)
            await btc_refresh(return_state=True)  # type: ignore[misc]  # a failure is on its run page; keep listening


async def main() -> None:
    """The task worker, the event listener and the heartbeat, until interrupted (on SIGTERM
    Prefect's task worker ends the runs in progress Crashed). A background task run has no flow
    run, and Prefect sends logs to the API only from flow runs: this process's logs stay in its
    own output (said once here instead of warned at every run)."""
    beat_s = Settings.from_env().warm_heartbeat_s
    with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        print(f"warm: serving btc-refresh, listening for {EVENT} events", flush=True)
        await asyncio.gather(aserve(btc_refresh), on_events(), keep_alive(beat_s))


async def sweep_once() -> None:
    """One sweep (for cron or a timer where no warm process runs)."""
    async with get_client() as client:
        orphans = await sweep(client, Settings.from_env().warm_heartbeat_s)
    print(f"warm: {len(orphans)} orphaned btc-refresh runs ended Crashed", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sweep", action="store_true", help="end orphaned btc-refresh runs as Crashed, then exit"
    )
    asyncio.run(sweep_once() if parser.parse_args().sweep else main())
