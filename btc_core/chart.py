"""A PNG chart of the daily average over the last days, drawn with matplotlib (no display needed).

The orchestrators decide where it goes: embedded in a Prefect markdown artifact (it then lives on
the control plane) or written to worker-side storage with only a link published
(``BTC_CHART=link``, strict hybrid); see :func:`btc_core.settings.Settings.chart_mode`.
"""

from __future__ import annotations

import base64
import io
from datetime import timedelta
from pathlib import Path

from btc_core.errors import ConfigError, InputError
from btc_core.store import PriceStore
from btc_core.transform import DayAvg, daily_rows

CHART_DAYS = 90


def last_days(store: PriceStore, days: int = CHART_DAYS) -> list[DayAvg]:
    """The daily averages of the ``days`` days up to the newest one in the store."""
    with store.connect() as con:
        (newest,) = con.execute("SELECT max(day) FROM daily_avg").fetchone()  # type: ignore[misc]
        if newest is None:
            return []
        return daily_rows(con, newest - timedelta(days=days - 1), newest)


def daily_avg_png(rows: list[DayAvg]) -> bytes:
    """A line chart of ``rows`` as PNG bytes (same rows, same bytes)."""
    if not rows:
        raise InputError("no daily averages to chart yet: run the pipeline first")
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("charts need matplotlib: uv sync installs it") from None

    matplotlib.use("Agg")  # no display on a worker
    from matplotlib import dates as mdates
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    try:
        ax.plot([r.day for r in rows], [r.avg_price_usd for r in rows], color="#f7931a", lw=2)
        ax.set_title(
            f"BTC daily average (USD), {rows[0].day} .. {rows[-1].day} ({len(rows)} days)",
            fontsize=11,
        )
        ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("${x:,.0f}"))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return out.getvalue()


def markdown_image(png: bytes, title: str) -> str:
    """Markdown showing ``png`` inline (a data URI), as Prefect's artifact page renders it."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})\n"


def save_png(png: bytes, directory: Path, name: str) -> Path:
    """Write ``png`` to ``directory/name.png`` atomically (worker-side storage)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    return path
