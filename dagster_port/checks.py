"""Asset checks on ``btc_price``: positive prices, no duplicate hours, at most 24 observations a day.

Freshness is not a check here: it is the ``FreshnessPolicy`` on the assets (see assets.py), which
Dagster 1.13 evaluates between runs and which supersedes ``build_last_update_freshness_checks``.
A check runs only after a successful materialization, so it could never see a stopped pipeline.

The rules read the table into pandas until btc_core offers them as SQL (see the README).
"""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from dagster_port.assets import DUCKDB_POOL, btc_price
from dagster_port.resources import DuckDBStore

MAX_PER_DAY = 24
MAX_EXAMPLES = 5


def _observations(duckdb: DuckDBStore) -> pd.DataFrame:
    with duckdb.store().connect() as con:
        return con.table("observations").select("ts", "price_usd").df()


def _examples(values: pd.Series) -> str:
    return ", ".join(str(v) for v in values.head(MAX_EXAMPLES))


@asset_check(asset=btc_price, blocking=True, pool=DUCKDB_POOL)
def prices_positive(duckdb: DuckDBStore) -> AssetCheckResult:
    """Every price is > 0. Blocking: a bad price must never reach ``daily_avg``."""
    frame = _observations(duckdb)
    bad = frame[~(frame["price_usd"] > 0)]
    return AssetCheckResult(
        passed=bad.empty,
        metadata={"non_positive": len(bad), "examples": _examples(bad["ts"])},
    )


@asset_check(asset=btc_price, pool=DUCKDB_POOL)
def no_duplicate_hours(duckdb: DuckDBStore) -> AssetCheckResult:
    """No two observations fall in the same UTC hour (the hour would count twice in its day)."""
    hours = _observations(duckdb)["ts"].dt.floor("h")
    repeated = hours[hours.duplicated()].drop_duplicates()
    return AssetCheckResult(
        passed=repeated.empty,
        metadata={"hours_repeated": len(repeated), "examples": _examples(repeated)},
    )


@asset_check(asset=btc_price, pool=DUCKDB_POOL)
def at_most_24_a_day(duckdb: DuckDBStore) -> AssetCheckResult:
    """No UTC day has more than 24 observations (a warning: the per-day view of duplicates)."""
    ts = _observations(duckdb)["ts"]
    per_day = ts.groupby(ts.dt.date).size()
    over = per_day[per_day > MAX_PER_DAY]
    return AssetCheckResult(
        passed=over.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "days_over": len(over),
            "max_per_day": int(per_day.max()) if len(per_day) else 0,
            "examples": _examples(pd.Series([f"{d}: {n}" for d, n in over.items()])),
        },
    )


CHECKS = [prices_positive, no_duplicate_hours, at_most_24_a_day]
