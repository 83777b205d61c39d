"""A PNG chart of the daily average over the last 90 complete days, drawn with matplotlib.

The orchestrators decide where it goes: embedded in a Prefect markdown artifact (it then lives on
the control plane) or written to worker-side storage with only a link published
(``BTC_CHART=link``, strict hybrid); see :func:`btc_core.settings.Settings.chart_mode`.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from btc_core.errors import ConfigError, InputError
from btc_core.files import special_kind, write_atomically
from btc_core.observations import utc_now
from btc_core.store import PriceStore
from btc_core.transform import DayAvg, daily_rows

CHART_DAYS = 90


@dataclass(frozen=True)
class Chart:
    """A drawn chart: its title, PNG bytes, the newest day it shows, and a key of its rows."""

    title: str
    png: bytes
    newest: date
    key: str


def chart_window(
    rows: list[DayAvg], days: int = CHART_DAYS, today: date | None = None
) -> list[DayAvg]:
    """The rows of the ``days`` calendar days up to the newest *complete* UTC day: today's
    average still moves every hour, so the chart (and its cache) changes once a day."""
    today = today or utc_now().date()
    complete = [r for r in rows if r.day < today]
    if not complete:
        return []
    span = min(days - 1, (complete[-1].day - date.min).days)  # --days 10**9 means all of them
    first = complete[-1].day - timedelta(days=span)
    return [r for r in complete if r.day >= first]


def last_days(store: PriceStore, days: int = CHART_DAYS) -> list[DayAvg]:
    """:func:`chart_window` of the store's daily averages (read only)."""
    if days < 1:
        raise ConfigError(f"--days must be at least 1 (got {days})")
    with store.read() as con:
        return chart_window(daily_rows(con), days)


def draw(rows: list[DayAvg], cache_dir: Path | None = None) -> Chart:
    """The chart of ``rows``. With ``cache_dir`` (worker-side), the PNG of the same rows is drawn
    once and read back afterwards: rendering costs ~0.1-0.3 s, a read ~0.1 ms."""
    if not rows:
        raise InputError("no complete day of daily averages to chart yet: run the pipeline first")
    title = f"BTC daily average, {rows[0].day} .. {rows[-1].day}"
    key = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    cached = cache_dir / f".chart-{key}.png" if cache_dir else None
    if cached and cached.is_file() and not special_kind(cached, follow=False):  # no symlink
        return Chart(title, cached.read_bytes(), rows[-1].day, key)
    png = daily_avg_png(rows)
    if cached:
        for old in cached.parent.glob(".chart-*.png"):  # keep only the newest chart
            old.unlink(missing_ok=True)
        save_png(png, cached.parent, cached.stem)
    return Chart(title, png, rows[-1].day, key)


def daily_avg_png(rows: list[DayAvg]) -> bytes:
    """A line chart of ``rows`` as PNG bytes (same rows, same bytes). Matplotlib's object API
    (no pyplot: no global state, safe in a worker thread), fixed margins and ticks."""
    if not rows:
        raise InputError("no daily averages to chart yet: run the pipeline first")
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import StrMethodFormatter
    except ImportError:
        raise ConfigError("charts need matplotlib: uv sync installs it") from None

    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax = fig.add_axes((0.1, 0.2, 0.87, 0.7))
    ax.plot(range(len(rows)), [r.avg_price_usd for r in rows], color="#f7931a", lw=2)
    ax.set_title(
        f"BTC daily average (USD), {rows[0].day} .. {rows[-1].day} ({len(rows)} days)",
        fontsize=11,
    )
    ax.yaxis.set_major_formatter(StrMethodFormatter("${x:,.0f}"))
    ticks = sorted({*range(0, len(rows), max(1, len(rows) // 6)), len(rows) - 1})
    ax.set_xticks(ticks, [rows[i].day.isoformat() for i in ticks], rotation=30, ha="right")
    ax.set_xlim(0, max(1, len(rows) - 1))
    ax.grid(alpha=0.3)
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def markdown_image(png: bytes, title: str) -> str:
    """Markdown showing ``png`` inline (a data URI), as Prefect's artifact page renders it."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})\n"


def save_png(png: bytes, directory: Path, name: str) -> Path:
    """Write ``png`` to ``directory/name.png`` atomically (worker-side storage)."""
    path = directory / f"{name}.png"
    write_atomically(path, png)
    return path
