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
"""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.logging import get_logger
from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings
from prefect.task_worker import aserve

from flows.boundary import guarded
from flows.btc import cycle, runtime_settings

EVENT = "btc.replay.updated"
log = get_logger("btc.warm")


@task(name="btc-refresh", persist_result=True)
@guarded
async def btc_refresh(source: str | None = None) -> str:
    """One cycle (extract -> load -> notify) in this warm process; ``source`` overrides
    ``BTC_SOURCE``. The same tasks, retries, cache and artifacts as the ``btc-pipeline`` flow."""
    return await cycle(runtime_settings(source=source), None)


async def on_events(name: str = EVENT) -> None:
    """Run :func:`btc_refresh` for every event called ``name``, as the server pushes them."""
    events = EventFilter(event=EventNameFilter(name=[name]))
    async with get_events_subscriber(filter=events, reconnect_on_clean_close=True) as stream:
        async for event in stream:
            log.info("event %s (%s): refreshing", event.event, event.resource.id)
            await btc_refresh(return_state=True)  # type: ignore[misc]  # a failure is on its run page; keep listening


async def main() -> None:
    """The task worker and the event listener, until interrupted. A background task run has no
    flow run, and Prefect sends logs to the API only from flow runs: this process's logs stay
    in its own output (said once here instead of warned at every run)."""
    with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        print(f"warm: serving btc-refresh, listening for {EVENT} events", flush=True)
        await asyncio.gather(aserve(btc_refresh), on_events())


if __name__ == "__main__":
    asyncio.run(main())
