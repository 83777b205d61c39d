"""The data boundary: what must never be found in the control plane's database."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import duckdb

from deployments.postgres import PG_ADMIN


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


def artifact_events(home: Path) -> str:
    """The payloads of the server's artifact events (SQLite), which copy the artifacts' data."""
    with closing(sqlite3.connect(home / "prefect.db")) as con:
        rows = con.execute(
            "SELECT payload FROM events WHERE event LIKE 'prefect.artifact-collection.%'"
        ).fetchall()
    return "\n".join(payload for (payload,) in rows)


def pg_dump_text(dbname: str) -> str:
    """A plain-text ``pg_dump`` of a database on the local PostgreSQL."""
    host, user = PG_ADMIN[PG_ADMIN.index("-h") + 1], PG_ADMIN[PG_ADMIN.index("-U") + 1]
    return subprocess.run(
        ["pg_dump", "-h", host, "-U", user, "--no-owner", dbname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def marked_file(replay_csv: Path, path: Path) -> dict[str, str]:
    """Write the replay's last two days to ``path`` with marked rows; return label -> marker.

    Valid rows whose prices are markers (they reach the worker's DuckDB only), rows rejected for
    their marked price or timestamp, and malformed rows (a field too many, too few) carrying a
    marker: none of these values may reach the control plane."""
    with replay_csv.open(newline="") as fh:
        lines = fh.read().splitlines()
    header, rows = lines[0], lines[-48:]
    markers = {
        "valid price": "31337.0101",
        "valid price (2nd day)": "31337.0202",
        "negative price": "-31337.0303",
        "implausible price": "31337.0404e9",
        "non-numeric price": "31337.0505x",
        "out-of-range timestamp": "31337050607",
        "malformed, a field too many": "MARKER-31337-0808",
        "malformed, too few fields": "31337.0909",
    }
    cells = [row.split(",") for row in rows]
    cells[3][5] = markers["valid price"]
    cells[30][5] = markers["valid price (2nd day)"]
    cells[5][5] = markers["negative price"]
    cells[33][5] = markers["implausible price"]
    cells[7][5] = markers["non-numeric price"]
    cells[9][0] = markers["out-of-range timestamp"]
    body = [",".join(c) for c in cells]
    body.insert(12, f"{rows[12]},{markers['malformed, a field too many']}")
    body.insert(40, f"{rows[40].split(',')[0]},{markers['malformed, too few fields']}")
    path.write_text("\n".join([header, *body]) + "\n")
    return {f"marker: {label}": value for label, value in markers.items()}
