"""Prefect's floor: an async flow with three tasks that do nothing, the shape of ``btc_pipeline``
(its parameters too: Prefect serializes them for the API, which imports FastAPI's encoder).

``bench/prefect_cost.py`` runs it in process (what a warm run costs with nothing in it), as a
script (what a cold run costs with nothing in it: ``python bench/floor_flow.py``) and as a
deployment on the same worker as ``btc-hourly`` (what a deployment run costs with nothing in it).
"""

import asyncio

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from btc_core.exit import skip_exit_collection


@task(cache_policy=NO_CACHE)
async def nothing(x: int) -> int:
    return x


@flow(name="btc-floor")
async def btc_floor(source: str | None = None, lookback_hours: int | None = None) -> int:
    return await nothing(await nothing(await nothing(1)))


@task(cache_policy=NO_CACHE)
def nothing_sync(x: int) -> int:
    return x


@flow(name="btc-floor-sync")
def btc_floor_sync() -> int:
    """The same as a sync flow: Prefect's sync engine joins the heartbeat thread at exit."""
    return nothing_sync(nothing_sync(nothing_sync(1)))


if __name__ == "__main__":
    skip_exit_collection()  # as flows/btc.py does
    print(asyncio.run(btc_floor()))
