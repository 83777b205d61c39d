"""Assets: ``btc_price`` -> ``daily_avg``, and their daily-partitioned twins for backfills.

The data lives in DuckDB and the assets return only metadata, so lineage comes from ``deps``
rather than an IO manager. Both pairs write the same two tables through btc_core's idempotent
upsert; Dagster tracks them apart because an asset has exactly one partitioning.
"""

from collections.abc import Callable
from datetime import date, timedelta
from functools import partial
from typing import Any, TypeVar

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    BackfillPolicy,
    DailyPartitionsDefinition,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    RetryRequested,
    asset,
)

from btc_core.errors import BtcError
from btc_core.observations import Batch, Window
from btc_core.pipeline import store_for
from btc_core.policy import RetryPolicy
from btc_core.report import markdown_table, recent_days, store_stats
from btc_core.settings import Settings
from btc_core.store import LoadResult, PriceStore
from btc_core.transform import refresh_daily_avg
from dagster_port.resources import DuckDBStore, PriceSource

GROUP = "btc"
BACKFILL_GROUP = "btc_backfill"
# Every step that opens the DuckDB file is in one concurrency pool: with a limit of 1 (README)
# Dagster queues them; without it btc_core's writer lock makes them wait their turn.
DUCKDB_POOL = "btc_duckdb"
# Hourly data: one missed run warns, two fail (evaluated by the daemon between runs).
HOURLY_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2), warn_window=timedelta(minutes=75)
)
# The first UTC day of the recorded data set (shared/data); older days have nothing to load.
DAILY_PARTITIONS = DailyPartitionsDefinition(start_date="2019-11-20")
T = TypeVar("T")

# eager(), with two changes. It waits for btc_price's blocking checks, so a bad price never
# reaches the averages. And its "handled" reset ignores a daily_avg update when btc_price updated
# in the same tick too: the daemon ticks every 30 s, and stock eager() then loses a btc_price
# update that landed after the daily_avg one, leaving daily_avg stale.
_HANDLED = (
    AutomationCondition.newly_requested()
    | (AutomationCondition.newly_updated() & ~AutomationCondition.any_deps_updated())
    | AutomationCondition.initial_evaluation()
).with_label("handled, unless upstream updated too")
DAILY_AVG_AUTOMATION = (
    AutomationCondition.eager().replace("handled", _HANDLED)
    & AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, after blocking checks")


def _load_metadata(batch: Batch, result: LoadResult) -> dict[str, Any]:
    return {
        "source": result.source,
        "inserted": result.inserted,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "first_day": result.first_day.isoformat(),
        "last_day": result.last_day.isoformat(),
        "rejected": batch.n_rejected,
        "notes": MetadataValue.text("\n".join(batch.notes)),
    }


def _try(context: AssetExecutionContext, settings: Settings, step: Callable[[int], T]) -> T:
    """One try of a step (``step(attempt)``): btc_core's retry policy in Dagster's terms. A
    retryable failure (source or busy store) while retries are left asks Dagster for a retry after
    the policy's backoff (``RetryRequested``); anything else fails the step at once (a
    ``RetryPolicy`` would retry every exception, a wrong API key included)."""
    attempt = context.retry_number + 1
    try:
        return step(attempt)
    except BtcError as exc:
        policy = RetryPolicy.from_settings(settings)
        if not policy.retries_left(attempt, exc):
            raise
        raise RetryRequested(policy.retries, policy.backoff(attempt)) from exc


def _load(
    context: AssetExecutionContext, source: PriceSource, duckdb: DuckDBStore, window: Window | None
) -> MaterializeResult:
    batch = _try(context, source.settings(), lambda attempt: source.fetch(window, attempt))
    store = duckdb.store()
    result = _try(context, duckdb.settings(), lambda _attempt: store.load(batch))
    for level, line in batch.log_lines():
        context.log.log(level, line)
    context.log.info(result.summary())
    stats = store_stats(store)
    return MaterializeResult(
        metadata=_load_metadata(batch, result)
        | {
            "dagster/row_count": stats["observations"],
            "first_observation": stats["first_observation"],
            "last_observation": stats["last_observation"],
        }
    )


def _daily_metadata(store: PriceStore, written: int, prices: bool) -> dict[str, Any]:
    """What the asset page shows for ``daily_avg``: sizes and the newest day; with ``prices``
    (``BTC_ARTIFACTS=full``) also its price and a preview (prices stay off the control plane
    otherwise, as in Prefect's artifacts)."""
    stats = store_stats(store)
    preview = recent_days(store, 7)
    metadata: dict[str, Any] = {
        "days_written": written,
        "dagster/row_count": stats["daily_avg_rows"],
    }
    if preview:
        metadata["latest_day"] = preview[0]["day"]
    if preview and prices:
        metadata |= {
            "latest_avg_price_usd": preview[0]["avg_price_usd"],
            "preview": MetadataValue.md(markdown_table(preview)),
        }
    return metadata


def _refresh(
    context: AssetExecutionContext, duckdb: DuckDBStore, first: date | None, last: date | None
) -> MaterializeResult:
    """Recompute ``daily_avg`` for ``first``..``last`` (all days when None), retried like a load."""
    settings = duckdb.settings()
    store = store_for(settings)
    written = _try(context, settings, lambda _attempt: refresh_daily_avg(store, first, last))
    return MaterializeResult(metadata=_daily_metadata(store, written, settings.artifacts == "full"))


@asset(group_name=GROUP, kinds={"duckdb"}, pool=DUCKDB_POOL, freshness_policy=HOURLY_FRESHNESS)
def btc_price(
    context: AssetExecutionContext, price_source: PriceSource, duckdb: DuckDBStore
) -> MaterializeResult:
    """BTC/USD observations (table ``observations``): the latest from the price source, upserted.

    For a replay source "the latest" is the whole recorded file up to now.
    """
    return _load(context, price_source, duckdb, None)


@asset(
    group_name=GROUP,
    deps=[btc_price],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=DAILY_AVG_AUTOMATION,
    freshness_policy=HOURLY_FRESHNESS,
)
def daily_avg(context: AssetExecutionContext, duckdb: DuckDBStore) -> MaterializeResult:
    """Average price per UTC day (table ``daily_avg``), recomputed for every day.

    Automation: after every ``btc_price`` update, once its blocking checks passed (see
    ``DAILY_AVG_AUTOMATION``). Recomputing every day is one GROUP BY in DuckDB, and stays right
    however many ``btc_price`` updates one ``daily_avg`` run follows.
    """
    return _refresh(context, duckdb, None, None)


# The backfill twins: whole UTC days, a range of days in one run.
by_day_asset = partial(
    asset,
    group_name=BACKFILL_GROUP,
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
)


def _partition_window(context: AssetExecutionContext) -> Window:
    span = context.partition_time_window
    return Window(span.start, span.end)


@by_day_asset()
def btc_price_by_day(
    context: AssetExecutionContext, price_source: PriceSource, duckdb: DuckDBStore
) -> MaterializeResult:
    """Observations of whole UTC days, for backfills: a range of days loads in one run."""
    return _load(context, price_source, duckdb, _partition_window(context))


@by_day_asset(deps=[btc_price_by_day])
def daily_avg_by_day(context: AssetExecutionContext, duckdb: DuckDBStore) -> MaterializeResult:
    """Daily averages of the partition's days."""
    days = _partition_window(context).day_list()
    return _refresh(context, duckdb, days[0], days[-1])
