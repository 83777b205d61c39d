"""What a run tells people, as plain data and markdown: the orchestrators only display it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from btc_core.chart import chart_window
from btc_core.observations import Batch
from btc_core.sql import one_row
from btc_core.store import LoadResult, PriceStore
from btc_core.transform import DayAvg, Latest, daily_rows

RUN_COUNTS_KEY = "btc-run-counts"  # the run's counts as a table artifact: what metrics read


def run_counts(batch: Batch, result: LoadResult) -> dict[str, int]:
    """One run's row counts, the one row of its ``btc-run-counts`` table artifact (no values:
    safe in strict hybrid). The metrics exporter reads these, never the markdown summary."""
    return {
        "received": batch.received,
        "rejected": batch.n_rejected,
        "duplicates": batch.duplicates,
        "inserted": result.inserted,
        "updated": result.updated,
        "unchanged": result.unchanged,
    }


def run_summary_markdown(
    batch: Batch, result: LoadResult, current: Latest | None, *, prices: bool
) -> str:
    """A short markdown report of one run; ``prices=False`` leaves every price out (strict hybrid)."""
    failover = "; ".join(batch.notes) if batch.notes else "no"
    lines = [
        "# BTC pipeline run",
        "",
        "| | |",
        "|---|---|",
        f"| source used | {batch.source} |",
        f"| failover taken | {failover} |",
        f"| rows received | {batch.received} |",
        f"| rows rejected | {batch.n_rejected} |",
        f"| duplicates collapsed | {batch.duplicates} |",
        f"| observations new / updated / unchanged | {result.inserted} / {result.updated} / {result.unchanged} |",
        f"| days touched | {result.first_day} .. {result.last_day} |",
    ]
    if batch.rejected:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(batch.rejected.items()))
        lines.append(f"| rejected by reason | {reasons} |")
    if prices and current is not None:
        change = (
            "" if current.change_pct is None else f" ({current.change_pct:+.2f}% vs previous day)"
        )
        lines.append(
            f"| latest daily average | {current.current.day}: ${current.current.avg_price_usd:,.2f}{change} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Snapshot:
    """What people see after a run, read in one go: the newest two days (the message), the
    recent days (a table, newest first, in the export's shape) and the chart's days."""

    latest: Latest | None
    recent: list[dict[str, object]]
    chart: list[DayAvg]


def snapshot(store: PriceStore, recent: int = 14) -> Snapshot:
    """The :class:`Snapshot` of the store, from one read of ``daily_avg``."""
    with store.connect() as con:
        rows = daily_rows(con)
    latest = Latest(rows[-1], rows[-2] if len(rows) > 1 else None) if rows else None
    table = [r.contract() for r in reversed(rows[-recent:])]
    return Snapshot(latest, table, chart_window(rows))


def recent_days(store: PriceStore, n: int = 14) -> list[dict[str, object]]:
    """The last ``n`` daily averages, newest first, in the export's shape."""
    return snapshot(store, n).recent


def store_stats(store: PriceStore) -> dict[str, Any]:
    """Row counts and the day range of the store's two tables."""
    with store.connect() as con:
        n_obs, first_ts, last_ts = one_row(
            con, "SELECT count(*), min(ts), max(ts) FROM observations"
        )
        (n_days,) = one_row(con, "SELECT count(*) FROM daily_avg")
    return {
        "observations": n_obs,
        "daily_avg_rows": n_days,
        "first_observation": first_ts.isoformat() if first_ts else "",
        "last_observation": last_ts.isoformat() if last_ts else "",
    }


def markdown_table(rows: list[dict[str, object]]) -> str:
    """``rows`` (same keys each) as a markdown table, for UIs that render markdown."""
    if not rows:
        return "_no rows yet_\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
