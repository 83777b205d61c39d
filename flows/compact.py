"""Prefect flow ``btc-compact``: DuckLake housekeeping, as its own scheduled deployment.

Every write to a DuckLake adds files (or inlined rows in the catalog); this flow flushes inlined
rows to Parquet, merges small files, expires old snapshots and deletes files no snapshot needs,
with DuckLake's own functions (btc_core.lake). It holds the writers' global concurrency limit, so
it never races a load. On a local DuckDB file there is nothing to do, and it says so::

    python flows/compact.py
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prefect import flow, get_run_logger, task

from btc_core.lake import LakeStore
from btc_core.pipeline import store_for
from flows.boundary import guarded
from flows.btc import off_loop, retry_if_transient, runtime_settings, writer_guard


@task(
    retries=2, retry_delay_seconds=10, retry_condition_fn=retry_if_transient, timeout_seconds=1800
)
@guarded
async def compact(keep_hours: float) -> str:
    """Compact the lake under the writer limit; the data files per table before and after."""
    settings = await runtime_settings()
    store = store_for(settings)
    if not isinstance(store, LakeStore):
        return f"nothing to compact: {store.describe()} (BTC_STORE_URL is not a DuckLake)"
    async with writer_guard(settings):
        result = await off_loop(store.compact, timedelta(hours=keep_hours))
    get_run_logger().info(result.summary())
    return result.summary()


@flow(name="btc-compact")
@guarded
async def btc_compact(keep_hours: float = 24.0) -> str:
    """Compact the DuckLake; snapshots younger than ``keep_hours`` stay (time travel, readers
    still on them)."""
    return await compact(keep_hours)


if __name__ == "__main__":
    print(asyncio.run(btc_compact()))
