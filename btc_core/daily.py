"""The daily-average refresh as SQL on an open connection, inside the caller's transaction.

:meth:`btc_core.store.PriceStore.load` runs it in the load's own transaction for the days the
batch touched, so observations and ``daily_avg`` always commit together;
:func:`btc_core.transform.refresh_daily_avg` runs it alone for explicit recomputes.

The average is taken over ``DECIMAL(18,8)`` prices: the sum is exact, so the result does not
depend on how DuckDB splits the work between threads, and every orchestrator gets the same bytes.
"""

from __future__ import annotations

from datetime import date

import duckdb

from btc_core.sql import execute, one_row

IN_DAYS = """($first IS NULL OR ts >= CAST($first AS TIMESTAMP))
           AND ($last IS NULL OR ts < CAST($last AS TIMESTAMP) + INTERVAL 1 DAY)"""

# The observations the averages use. A local file keeps ts unique (the MERGE runs under its
# writer lock), so all rows. A DuckLake cannot promise that (no keys: two hosts upserting the
# same new ts at once both insert it), so one row per ts: the later ingested, then the higher
# price. Only where needed: on 5M rows the deduplication took 0.3-3.6 s here, the mean 0.05-0.4 s.
ROWS = {
    True: f"SELECT ts, price_usd FROM observations WHERE {IN_DAYS}",
    False: f"""SELECT ts, price_usd FROM observations WHERE {IN_DAYS}
        QUALIFY row_number() OVER (PARTITION BY ts ORDER BY ingested_at DESC, price_usd DESC) = 1""",
}

DELETE_DAYS = """
DELETE FROM daily_avg
 WHERE ($first IS NULL OR day >= $first) AND ($last IS NULL OR day <= $last)
"""


def insert_days_sql(unique_ts: bool) -> str:
    """Daily averages of the days ``$first``..``$last`` (all when NULL) into ``daily_avg``."""
    return f"""
INSERT INTO daily_avg
SELECT CAST(ts AS DATE) AS day,
       CAST(avg(CAST(price_usd AS DECIMAL(18, 8))) AS DOUBLE) AS avg_price_usd,
       CAST(count(*) AS INTEGER) AS n_obs
  FROM ({ROWS[unique_ts]})
 GROUP BY ALL
 ORDER BY day
"""


def refresh_days(
    con: duckdb.DuckDBPyConnection, unique_ts: bool, first: date | None, last: date | None
) -> int:
    """Recompute ``daily_avg`` for ``first``..``last`` (all days when None) on ``con``, in the
    transaction the caller holds. Returns the number of days written."""
    days = {"first": first, "last": last}
    execute(con, DELETE_DAYS, days)
    execute(con, insert_days_sql(unique_ts), days)
    (n,) = one_row(
        con,
        """SELECT count(*) FROM daily_avg
            WHERE ($first IS NULL OR day >= $first) AND ($last IS NULL OR day <= $last)""",
        days,
    )
    return n
