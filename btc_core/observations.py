"""Observations: time windows, the validated batch every source returns, and its validation.

Validation is SQL in an in-memory DuckDB, so a 5-million-row replay file is checked as fast as
a 3-row API answer. Raw rows arrive as text (``epoch``, ``price``) whatever their
origin; each row is kept or rejected with a reason, duplicates collapse (the later line wins).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb
import pandas as pd

from btc_core.errors import BadPayload, ConfigError

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5
# Unix seconds beyond which an epoch is certainly not a price observation (year 2100).
_MAX_EPOCH_S = 4_102_444_800


def utc_now() -> datetime:
    """The current time, UTC, timezone-aware."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime; naive values are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """A half-open UTC time range ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        object.__setattr__(self, "end", as_utc(self.end))
        if self.end <= self.start:
            raise ConfigError(
                f"empty window: {self.start:%Y-%m-%d %H:%M} is not before {self.end:%Y-%m-%d %H:%M}"
            )

    @classmethod
    def days(cls, first: date, last: date) -> Window:
        """Whole UTC days ``first`` to ``last``, both included."""
        if last < first:
            raise ConfigError(f"--to {last} is before --from {first}")
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        return cls(start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1))

    @classmethod
    def last_hours(cls, hours: int, now: datetime | None = None) -> Window:
        """The ``hours`` before ``now``."""
        end = as_utc(now or utc_now())
        return cls(end - timedelta(hours=hours), end)

    def chunks(self, size: timedelta) -> Iterator[Window]:
        """Consecutive sub-windows of at most ``size``."""
        start = self.start
        while start < self.end:
            end = min(start + size, self.end)
            yield Window(start, end)
            start = end

    def day_list(self) -> list[date]:
        """Every UTC day the window touches."""
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%dT%H:%M}Z, {self.end:%Y-%m-%dT%H:%M}Z)"


@dataclass
class Batch:
    """Validated observations from one source: one row per timestamp, sorted.

    ``frame`` has columns ``ts`` (naive UTC ``datetime64[us]``) and ``price_usd`` (float64).
    """

    source: str
    frame: pd.DataFrame
    received: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def first_day(self) -> date:
        return self.frame["ts"].iloc[0].date()

    @property
    def last_day(self) -> date:
        return self.frame["ts"].iloc[-1].date()

    def summary(self) -> str:
        """One line: what came in and what was kept."""
        line = (
            f"{self.source}: {len(self.frame)} observations kept of {self.received} received "
            f"({self.n_rejected} rejected, {self.duplicates} duplicates collapsed)"
        )
        if self.rejected:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.rejected.items()))
            line += f"; rejected by reason: {reasons}"
        return line


def validate(
    con: duckdb.DuckDBPyConnection,
    raw_sql: str,
    *,
    source: str,
    epoch_scale: int,
    max_price: float,
    first_line: int = 1,
    skipped_rows: Callable[[duckdb.DuckDBPyConnection], list[Skipped]] | None = None,
    window: Window | None = None,
    now: datetime | None = None,
    not_before: datetime | None = None,
    empty_error: type[Exception] = BadPayload,
    what: str = "payload",
) -> Batch:
    """Validate the raw rows of ``raw_sql`` (text columns ``epoch`` and ``price``, in order).

    ``epoch_scale`` turns the epoch into microseconds (1_000_000 for seconds, 1_000 for ms);
    Rows are reported to people by line, the first row being ``first_line``; ``skipped_rows``
    tells, once the input was read, which lines the reader itself rejected (as ``(line, reason,
    text)``). Rows outside ``window`` are ignored (not rejected). Raises ``empty_error`` when no
    valid row remains.
    """
    now = as_utc(now or utc_now())
    params = {
        "scale": epoch_scale,
        "max_epoch_us": _MAX_EPOCH_S * 1_000_000,
        "max_price": max_price,
        "now": now.replace(tzinfo=None),
        "not_before": as_utc(not_before).replace(tzinfo=None) if not_before else None,
    }
    # One pass over the input; the temp table keeps input order (DuckDB preserves insertion
    # order), so rowid is the position in the file. Raw text is kept for rejected rows only.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE staged AS
        WITH parsed AS (
            SELECT epoch, price AS price_raw,
                   TRY_CAST(epoch AS DOUBLE) * $scale AS epoch_us,
                   TRY_CAST(price AS DOUBLE) AS price
            FROM ({raw_sql})
        ), checked AS (
            SELECT *,
                   CASE WHEN epoch_us >= 0 AND epoch_us < $max_epoch_us
                        THEN make_timestamp(CAST(round(epoch_us) AS BIGINT)) END AS ts
            FROM parsed
        ), judged AS (
            SELECT *,
                   CASE
                       WHEN epoch IS NULL OR trim(epoch) = '' THEN 'missing timestamp'
                       WHEN epoch_us IS NULL THEN 'non-numeric timestamp'
                       WHEN ts IS NULL THEN 'timestamp out of range'
                       WHEN price_raw IS NULL OR trim(price_raw) = '' THEN 'missing price'
                       WHEN price IS NULL THEN 'non-numeric price'
                       WHEN NOT isfinite(price) THEN 'non-finite price'
                       WHEN price <= 0 THEN 'non-positive price'
                       WHEN price > $max_price THEN 'implausible price'
                       WHEN ts > $now THEN 'timestamp in the future'
                       WHEN ts < $not_before THEN 'stale timestamp'
                   END AS reason
            FROM checked
        )
        SELECT ts, price, reason,
               CASE WHEN reason IS NOT NULL THEN epoch END AS epoch_raw,
               CASE WHEN reason IS NOT NULL THEN price_raw END AS price_raw
        FROM judged
        """,
        params,
    )
    malformed = skipped_rows(con) if skipped_rows else []
    line_of = _line_finder(first_line, [line for line, _, _ in malformed])
    in_window, wparams = "TRUE", {}
    if window is not None:
        in_window = "ts >= $start AND ts < $end"
        wparams = {
            "start": window.start.replace(tzinfo=None),
            "end": window.end.replace(tzinfo=None),
        }
    (received,) = con.execute(
        f"SELECT count(*) FROM staged WHERE reason IS NOT NULL OR ({in_window})", wparams
    ).fetchone()  # type: ignore[misc]
    rejected: Counter[str] = Counter(reason for _, reason, _ in malformed)
    found = [(line, f"{what} line {line}: {reason} ({text!r})") for line, reason, text in malformed]
    for reason, count, samples in con.execute(
        f"""SELECT reason, count(*), list([rowid::VARCHAR, epoch_raw, price_raw] ORDER BY rowid)[1:{MAX_EXAMPLES}]
            FROM staged WHERE reason IS NOT NULL GROUP BY reason"""
    ).fetchall():
        rejected[reason] += count
        for rowid, epoch, price_raw in samples:
            line = line_of(int(rowid))
            found.append(
                (line, f"{what} line {line}: {reason} (time={epoch!r}, price={price_raw!r})")
            )
    examples = [text for _, text in sorted(found)[:MAX_EXAMPLES]]
    received += len(malformed)
    frame = con.execute(
        f"SELECT ts, price AS price_usd FROM staged WHERE reason IS NULL AND {in_window}", wparams
    ).df()
    con.execute("DROP TABLE staged")
    if not frame["ts"].is_monotonic_increasing:
        frame = frame.sort_values("ts", kind="stable", ignore_index=True)
    duplicated = frame["ts"].duplicated(keep="last")  # input order survives the stable sort
    n_duplicates = int(duplicated.sum())
    if n_duplicates:
        frame = frame[~duplicated].reset_index(drop=True)
    batch = Batch(source, frame, received, dict(rejected), examples, n_duplicates)
    for example in examples:
        log.warning("rejected %s", example)
    if frame.empty:
        where = f" in {window}" if window else ""
        detail = f"; {batch.summary()}" if received else ""
        raise empty_error(f"{source}: no valid observation{where} in the {what}{detail}")
    log.info("%s", batch.summary())
    return batch


Skipped = tuple[int, str, str]  # (line, reason, text) of a row the reader could not split


def _line_finder(first_line: int, skipped: list[int]) -> Callable[[int], int]:
    """Map the position of a kept row to its line, stepping over the ``skipped`` lines."""

    def line_of(rowid: int) -> int:
        line = rowid + first_line
        for s in sorted(skipped):
            if s <= line:
                line += 1
        return line

    return line_of


def frame_to_sql(con: duckdb.DuckDBPyConnection, rows: list[tuple[object, object]]) -> str:
    """Register raw ``(epoch, price)`` pairs from a JSON payload; return SQL selecting them."""
    raw = pd.DataFrame(
        {"epoch": [_text(e) for e, _ in rows], "price": [_text(p) for _, p in rows]}, dtype=object
    )
    con.register("raw_payload", raw)
    return (
        "SELECT CAST(epoch AS VARCHAR) AS epoch, CAST(price AS VARCHAR) AS price FROM raw_payload"
    )


def _text(value: object) -> str | None:
    """JSON scalars as text for the SQL parser; containers and booleans are not numbers."""
    if value is None or isinstance(value, bool | list | dict):
        return None if value is None else f"<{type(value).__name__}>"
    return str(value)
