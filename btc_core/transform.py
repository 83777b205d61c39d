"""Daily averages: explicit recomputes, reads, and the byte-stable export JSON of the contract.

Every load already refreshes the days it touched in its own transaction (``PriceStore.load``,
SQL in :mod:`btc_core.daily`); :func:`refresh_daily_avg` recomputes all days or a window on
request. Reads never create a database. The export rounds the exact mean to cents, half to even.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb

from btc_core.daily import refresh_days
from btc_core.errors import InputError
from btc_core.files import write_atomically
from btc_core.sql import execute, one_row
from btc_core.store import PriceStore, transaction

CENT = Decimal("0.01")

# One row per day even if two refreshes of a new day committed at once: the one that counted
# more observations (the later, as observations only grow) wins.
DAILY_ROWS = """
SELECT day, arg_max(avg_price_usd, (n_obs, avg_price_usd)), max(n_obs)
  FROM daily_avg
 WHERE ($first IS NULL OR day >= $first) AND ($last IS NULL OR day <= $last)
 GROUP BY day
"""


# Rows no load writes: an average that is not a positive finite number, or over no observation.
IMPOSSIBLE = """
SELECT count(*) FROM daily_avg
 WHERE NOT (isfinite(avg_price_usd) AND avg_price_usd > 0 AND n_obs >= 1)
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
    with store.connect() as con, transaction(con, store):
        n = refresh_days(con, store.unique_ts, first, last)
    return n


def daily_rows(
    con: duckdb.DuckDBPyConnection, first: date | None = None, last: date | None = None
) -> list[DayAvg]:
    """Rows of ``daily_avg`` sorted by day, optionally limited to ``first``..``last``."""
    return _read(con, "ORDER BY day", first, last)


def _read(
    con: duckdb.DuckDBPyConnection, order: str, first: date | None = None, last: date | None = None
) -> list[DayAvg]:
    """Rows of ``daily_avg`` in ``order``; :class:`InputError` if the table holds a row no load
    writes (the file was changed by another program): nothing is exported or drawn from it."""
    (bad,) = one_row(con, IMPOSSIBLE)
    if bad:
        raise InputError(
            f"daily_avg holds {bad} impossible row(s) (a NaN, infinite or non-positive average, "
            "or no observation): it was changed outside btc; restore it from a backup"
        )
    rows = execute(con, f"{DAILY_ROWS} {order}", {"first": first, "last": last}).fetchall()
    return [DayAvg(*row) for row in rows]


def latest(store: PriceStore) -> Latest | None:
    """The last two days of ``daily_avg``, or None when it is empty."""
    with store.read() as con:
        days = _read(con, "ORDER BY day DESC LIMIT 2")
    if not days:
        return None
    return Latest(days[0], days[1] if len(days) > 1 else None)


def export_json(rows: list[DayAvg]) -> str:
    """The output contract: a JSON list sorted by day, keys sorted, 2-decimal prices, one
    trailing newline. Same rows, same bytes."""
    ordered = sorted(rows, key=lambda r: r.day)
    return json.dumps([r.contract() for r in ordered], indent=2, sort_keys=True) + "\n"


def export(store: PriceStore, out: Path | None = None) -> str:
    """Export the whole ``daily_avg`` table; write it to ``out`` atomically when given."""
    with store.read() as con:
        text = export_json(daily_rows(con))
    if out is not None:
        write_atomically(out, text.encode())
    return text
