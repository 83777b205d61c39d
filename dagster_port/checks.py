"""Asset checks on ``btc_price``: positive prices, no duplicate hours, at most 24 observations a day.

The rules are SQL in btc_core.quality; here they become Dagster checks with metadata.
Freshness is not a check here: it is the ``FreshnessPolicy`` on the assets (see assets.py), which
Dagster 1.13 evaluates between runs and which supersedes ``build_last_update_freshness_checks``.
A check runs only after a successful materialization, so it could never see a stopped pipeline.
"""

from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from btc_core import quality
from dagster_port.assets import DUCKDB_POOL, btc_price
from dagster_port.resources import DuckDBStore


def _result(
    duckdb: DuckDBStore,
    rule: str,
    key: str,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
    **metadata: Any,
) -> AssetCheckResult:
    found = quality.check(duckdb.store(), rule)
    return AssetCheckResult(
        passed=found.passed,
        severity=severity,
        metadata={key: found.violations, "examples": ", ".join(found.examples), **metadata},
    )


@asset_check(asset=btc_price, blocking=True, pool=DUCKDB_POOL)
def prices_positive(duckdb: DuckDBStore) -> AssetCheckResult:
    """Every price is > 0. Blocking: a bad price must never reach ``daily_avg``."""
    return _result(duckdb, "non_positive_prices", "non_positive")


@asset_check(asset=btc_price, pool=DUCKDB_POOL)
def no_duplicate_hours(duckdb: DuckDBStore) -> AssetCheckResult:
    """No two observations fall in the same UTC hour (the hour would count twice in its day)."""
    return _result(duckdb, "repeated_hours", "hours_repeated")


@asset_check(asset=btc_price, pool=DUCKDB_POOL)
def at_most_24_a_day(duckdb: DuckDBStore) -> AssetCheckResult:
    """No UTC day has more than 24 observations (a warning: the per-day view of duplicates)."""
    return _result(
        duckdb,
        "days_over_24",
        "days_over",
        AssetCheckSeverity.WARN,
        max_per_day=quality.max_per_day(duckdb.store()),
    )


CHECKS = [prices_positive, no_duplicate_hours, at_most_24_a_day]
