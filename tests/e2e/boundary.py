"""The data boundary: what must never be found in the control plane's database."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import duckdb

from deployments.stack import PG_ADMIN


def close_prices(replay_csv: Path, n: int = 6) -> list[str]:
    """The last ``n`` close prices of the replay file, as written there (e.g. ``42265.16``):
    the latest hours of every replay run, and what the fake CoinGecko serves as "latest"."""
    with replay_csv.open(newline="") as fh:
        closes = [row["close"] for row in csv.DictReader(fh)]
    return closes[-n:]


def daily_averages(db: Path, n: int = 6) -> list[str]:
    """The newest daily averages of a worker's DuckDB, as plain and as notification text."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT avg_price_usd FROM daily_avg ORDER BY day DESC LIMIT ?", [n]
        ).fetchall()
    return [text for (avg,) in rows for text in (f"{avg:.2f}", f"{avg:,.2f}")]


def forbidden(prices: list[str], secrets: dict[str, str]) -> dict[str, str]:
    """Label -> text that must not be stored on the control plane."""
    found = {f"price {p}": p for p in prices}
    found.update(secrets)
    return found


def leaks(text: str, strings: dict[str, str]) -> list[str]:
    """The labels of the forbidden strings that occur in ``text``."""
    return sorted(label for label, value in strings.items() if value in text)


def sqlite_text(home: Path) -> str:
    """The server's SQLite database with its WAL, as text (bytes decoded one to one)."""
    files = sorted(home.glob("prefect.db*"))
    assert files, f"no SQLite database in {home}"
    return "".join(f.read_bytes().decode("latin-1") for f in files)


def pg_dump_text(dbname: str) -> str:
    """A plain-text ``pg_dump`` of a database on the local PostgreSQL."""
    host, user = PG_ADMIN[PG_ADMIN.index("-h") + 1], PG_ADMIN[PG_ADMIN.index("-U") + 1]
    return subprocess.run(
        ["pg_dump", "-h", host, "-U", user, "--no-owner", dbname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
