"""Daily averages in SQL and the byte-stable export JSON of the output contract.

The average is taken over ``DECIMAL(18,8)`` prices: the sum is exact, so the result does not
depend on how DuckDB splits the work between threads, and every orchestrator gets the same bytes.
The export rounds that mean to cents, half to even.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb

from btc_core.store import PriceStore, commit

CENT = Decimal("0.01")

DELETE_DAYS = """
DELETE FROM daily_avg
 WHERE ($first IS NULL OR day >= $first) AND ($last IS NULL OR day <= $last)
"""

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


# One row per day even if two refreshes of a new day committed at once: the one that counted
# more observations (the later, as observations only grow) wins.
DAILY_ROWS = """
SELECT day, arg_max(avg_price_usd, (n_obs, avg_price_usd)), max(n_obs)
  FROM daily_avg
 WHERE ($first IS NULL OR day >= $first) AND ($last IS NULL OR day <= $last)
 GROUP BY day
"""


def round_cents(value: float) -> float:
    """Round to cents, half to even, on the decimal the double stands for (``repr``), so a mean
    of exactly x.xx5 rounds the same way whatever binary noise the double carries."""
    return float(Decimal(repr(value)).quantize(CENT, rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class DayAvg:
    """One row of ``daily_avg``."""

    day: date
    avg_price_usd: float
    n_obs: int

    def contract(self) -> dict[str, object]:
        """This row as the export JSON shows it."""
        return {
            "day": self.day.isoformat(),
            "avg_price_usd": round_cents(self.avg_price_usd),
            "n_obs": self.n_obs,
        }


@dataclass(frozen=True)
class Latest:
    """The newest daily average and the change against the day before (if any)."""

    current: DayAvg
    previous: DayAvg | None

    @property
    def change_pct(self) -> float | None:
        if self.previous is None:
            return None
        return (self.current.avg_price_usd / self.previous.avg_price_usd - 1.0) * 100.0


def refresh_daily_avg(
    store: PriceStore, first: date | None = None, last: date | None = None
) -> int:
    """Recompute ``daily_avg`` for the days ``first``..``last`` (all days when None), in one
    transaction. Returns the number of days written."""
    with store.connect() as con:
        con.begin()
        try:
            con.execute(DELETE_DAYS, {"first": first, "last": last})
            con.execute(insert_days_sql(store.unique_ts), {"first": first, "last": last})
            (n,) = con.execute(
                """SELECT count(*) FROM daily_avg
                    WHERE ($first IS NULL OR day >= $first) AND ($last IS NULL OR day <= $last)""",
                {"first": first, "last": last},
            ).fetchone()  # type: ignore[misc]
            commit(con, store)
        except BaseException:
            con.rollback()
            raise
    return n


def daily_rows(
    con: duckdb.DuckDBPyConnection, first: date | None = None, last: date | None = None
) -> list[DayAvg]:
    """Rows of ``daily_avg`` sorted by day, optionally limited to ``first``..``last``."""
    rows = con.execute(f"{DAILY_ROWS} ORDER BY day", {"first": first, "last": last}).fetchall()
    return [DayAvg(*row) for row in rows]


def latest(store: PriceStore) -> Latest | None:
    """The last two days of ``daily_avg``, or None when it is empty."""
    with store.connect() as con:
        rows = con.execute(
            f"{DAILY_ROWS} ORDER BY day DESC LIMIT 2", {"first": None, "last": None}
        ).fetchall()
    if not rows:
        return None
    days = [DayAvg(*row) for row in rows]
    return Latest(days[0], days[1] if len(days) > 1 else None)


def export_json(rows: list[DayAvg]) -> str:
    """The output contract: a JSON list sorted by day, keys sorted, 2-decimal prices, one
    trailing newline. Same rows, same bytes."""
    ordered = sorted(rows, key=lambda r: r.day)
    return json.dumps([r.contract() for r in ordered], indent=2, sort_keys=True) + "\n"


def export(store: PriceStore, out: Path | None = None) -> str:
    """Export the whole ``daily_avg`` table; write it to ``out`` atomically when given."""
    with store.connect() as con:
        text = export_json(daily_rows(con))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    return text
