"""Observations: time windows, the validated batch every source returns, and its validation.

Validation is SQL in an in-memory DuckDB, so a 5-million-row replay file is checked as fast as
a 3-row API answer. Raw rows arrive as text (``epoch``, ``price``) whatever their origin; each
row is kept, rejected with a reason, or (with a window) left aside as outside it; duplicates
collapse, the later line wins. The rules, in order (docs/input.md):

- the timestamp is a plain decimal number (no exponent) of whole seconds (or milliseconds, per
  source) from 1970 to 2100; surrounding spaces are ignored; a fraction is rejected;
- the price is a decimal number (exponent allowed), read as a double: finite, > 0 and at most
  ``max_price``;
- the timestamp is not in the future (and, for a "latest" price, not stale).

What reaches an orchestrator (``Batch.summary``, ``Batch.examples``, errors) carries line
numbers, reasons and counts, never a value from the data. The raw text of rejected rows, cut to
a readable length, goes only to :data:`worker_log`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, cast, overload

import duckdb

from btc_core.errors import BadPayload, ConfigError
from btc_core.sql import execute, one_row, texts_sql

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)
# Raw rejected rows go here, never to ``btc_core``'s tree: deployments/stack.py forwards that tree
# to the control plane (PREFECT_LOGGING_EXTRA_LOGGERS=btc_core), and this logger is outside it.
# It propagates to the root logger: the worker's console and its own log file.
worker_log = logging.getLogger("btc_worker.rejected")

MAX_EXAMPLES = 5
EXAMPLE_CHARS = 60  # a raw value or line is cut to this many characters in the worker's log
# Unix seconds beyond which an epoch is certainly not a price observation (year 2100).
_MAX_EPOCH_S = 4_102_444_800
UNITS = {1_000_000: "second", 1_000: "millisecond"}


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
        """Whole UTC days ``first`` to ``last``, both included; ``last`` may not be after today."""
        if last < first:
            raise ConfigError(f"--to {last} is before --from {first}")
        today = utc_now().date()
        if last > today:
            raise ConfigError(
                f"--to {last} is in the future (today is {today}, UTC): nothing to load there yet"
            )
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

    ``ts`` (naive UTC ``datetime64[us]``) and ``price_usd`` (float64) are NumPy arrays of the
    same length, which DuckDB scans as they are (no pandas). Every row received is kept,
    rejected, or collapsed into a later duplicate: ``received == kept + n_rejected + duplicates``. ``outside`` rows had a valid timestamp
    outside the requested window and were not received. ``examples`` name a few rejected rows by
    line and reason only (no value from the data), so they may go anywhere.
    """

    source: str
    ts: NDArray[np.datetime64]
    price_usd: NDArray[np.float64]
    received: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)
    changed: int = 0  # duplicates whose price differed from the later line's
    outside: int = 0

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def kept(self) -> int:
        return len(self.ts)

    @property
    def first_day(self) -> date:
        return _day(self.ts[0])

    @property
    def last_day(self) -> date:
        return _day(self.ts[-1])

    def columns(self) -> dict[str, NDArray[np.datetime64] | NDArray[np.float64]]:
        """The observations as a table DuckDB can register: columns ``ts`` and ``price_usd``."""
        return {"ts": self.ts, "price_usd": self.price_usd}

    def log_lines(self) -> list[tuple[int, str]]:
        """What every orchestrator logs of this batch, as (level, line): the summary, then each
        rejected example (line and reason, no value) and each note as a warning."""
        warnings = [f"rejected {example}" for example in self.examples] + self.notes
        return [(logging.INFO, self.summary()), *((logging.WARNING, w) for w in warnings)]

    def summary(self) -> str:
        """One line: what came in, what was kept, and why the rest was not."""
        line = (
            f"{self.source}: {self.kept} observations kept of {self.received} received "
            f"({self.n_rejected} rejected, {self.duplicates} duplicates collapsed)"
        )
        if self.changed:
            line += (
                f"; {self.changed} duplicate timestamps had a different price: the later line won"
            )
        if self.rejected:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.rejected.items()))
            line += f"; rejected by reason: {reasons}"
        if self.outside:
            line += f"; {self.outside} valid rows outside the window left aside"
        return line


def _day(moment: np.datetime64) -> date:
    """The UTC day of a naive UTC ``datetime64`` of any unit."""
    day: date = moment.astype("datetime64[D]").item()
    return day


# (line, reason, raw text cut by :func:`cut`) of a row the reader itself could not split
Skipped = tuple[int, str, str]

NUMBER = "[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)"
# NaN and infinity, signed or not, any case (a regular expression: DuckDB turns a long IN list
# into a hash join, which does not keep the rows' order)
NON_FINITE = "(?i)[+-]?(nan|inf|infinity)"
# The judgement of every raw row, in input order (the temp table keeps it: rowid is the
# position). Raw text is kept for the rejected rows only. A value DuckDB's cast reads and writes
# back unchanged ("plain": 1696118400, 42000.5) obeys the rules as it is; only the others are
# trimmed and matched against the grammar (regular expressions cost ~3x the rest, measured).
STAGE = f"""
CREATE OR REPLACE TEMP TABLE staged AS
WITH raw AS (
    SELECT epoch AS e_raw, price AS p_raw,
           CAST(epoch AS VARCHAR) AS e0, CAST(price AS VARCHAR) AS p0,
           TRY_CAST(CAST(epoch AS VARCHAR) AS BIGINT) AS e_big,
           TRY_CAST(CAST(price AS VARCHAR) AS DOUBLE) AS p_double
    FROM ({{raw_sql}})
), plain AS (
    SELECT *,
           coalesce(CAST(e_big AS VARCHAR) = e0, false) AS e_plain,
           coalesce(isfinite(p_double) AND CAST(p_double AS VARCHAR) = p0, false) AS p_plain
    FROM raw
), trimmed AS (
    SELECT *,
           CASE WHEN e_plain THEN e0 ELSE trim(e0, ' ') END AS e,
           CASE WHEN p_plain THEN p0 ELSE trim(p0, ' ') END AS p
    FROM plain
), parsed AS (
    SELECT *,
           CASE WHEN e_plain THEN true ELSE regexp_full_match(e, '{NUMBER}') END AS e_number,
           CASE WHEN e_plain THEN true ELSE regexp_full_match(e, '[+-]?[0-9]*([.]0*)?') END
               AS e_whole,
           CASE WHEN p_plain THEN false ELSE regexp_full_match(p, '{NON_FINITE}') END
               AS p_non_finite,
           CASE WHEN p_plain THEN true
                ELSE regexp_full_match(p, '{NUMBER}([eE][+-]?[0-9]+)?') END AS p_number
    FROM trimmed
), valued AS (
    SELECT *,
           CASE WHEN e_plain THEN e_big
                WHEN e_number AND e_whole THEN TRY_CAST(e AS HUGEINT) END AS e_int,
           CASE WHEN p_plain THEN p_double WHEN p_number THEN TRY_CAST(p AS DOUBLE) END AS price
    FROM parsed
), dated AS (
    SELECT *,
           CASE WHEN e_int >= 0 AND e_int < $max_epoch_units
                THEN make_timestamp(CAST(e_int AS BIGINT) * $scale) END AS ts
    FROM valued
)
SELECT ts, price,
       CASE
           WHEN e IS NULL OR e = '' THEN 'missing timestamp'
           WHEN NOT e_number THEN 'non-numeric timestamp'
           WHEN NOT e_whole THEN 'timestamp not a whole {{unit}}'
           WHEN ts IS NULL THEN 'timestamp out of range'
           WHEN p IS NULL OR p = '' THEN 'missing price'
           WHEN p_non_finite THEN 'non-finite price'
           WHEN NOT p_number THEN 'non-numeric price'
           WHEN price <= 0 THEN 'non-positive price'
           WHEN price > $max_price THEN 'implausible price'
           WHEN ts > $now THEN 'timestamp in the future'
           WHEN ts < $not_before THEN 'stale timestamp'
       END AS reason,
       CASE WHEN reason IS NOT NULL THEN CAST(e_raw AS VARCHAR) END AS epoch_raw,
       CASE WHEN reason IS NOT NULL THEN CAST(p_raw AS VARCHAR) END AS price_raw
FROM dated
"""


class Unaccounted(Exception):
    """The reader delivered another number of rows than the input has lines: read it again."""


def validate(
    con: duckdb.DuckDBPyConnection,
    raw_sql: str,
    *,
    source: str,
    epoch_scale: int,
    max_price: float,
    first_line: int = 1,
    skipped_rows: Callable[[duckdb.DuckDBPyConnection], list[Skipped]] | None = None,
    line_numbers: Sequence[int] | None = None,
    expected_rows: int | None = None,
    window: Window | None = None,
    now: datetime | None = None,
    not_before: datetime | None = None,
    empty_error: type[Exception] = BadPayload,
    what: str = "payload",
) -> Batch:
    """Validate the raw rows of ``raw_sql`` (text columns ``epoch`` and ``price``, in order).

    ``epoch_scale`` turns the epoch into microseconds: 1_000_000 for seconds, 1_000 for ms.
    Rows are reported by line: the ``i``-th row is on ``line_numbers[i]`` when given, else on
    ``first_line + i`` stepping over the lines ``skipped_rows`` names (rows the reader itself
    rejected, as ``(line, reason, text)``, known once the input was read). When
    ``expected_rows`` is given and rows plus skipped lines differ from it, :class:`Unaccounted`
    is raised. Rows outside ``window`` are left aside (counted, not rejected). Raises
    ``empty_error`` when no valid row remains.
    """
    now = as_utc(now or utc_now())
    execute(
        con,
        STAGE.format(raw_sql=raw_sql, unit=UNITS[epoch_scale]),
        {
            "scale": epoch_scale,
            "max_epoch_units": _MAX_EPOCH_S * 1_000_000 // epoch_scale,
            "max_price": max_price,
            "now": now.replace(tzinfo=None),
            "not_before": as_utc(not_before).replace(tzinfo=None) if not_before else None,
        },
    )
    try:
        malformed = skipped_rows(con) if skipped_rows else []
        return _judge(
            con,
            malformed,
            line_numbers
            if line_numbers is not None
            else _LineFinder(first_line, [line for line, _, _ in malformed]),
            expected_rows,
            source=source,
            window=window,
            empty_error=empty_error,
            what=what,
        )
    finally:
        con.execute("DROP TABLE IF EXISTS staged")


def _judge(
    con: duckdb.DuckDBPyConnection,
    malformed: list[Skipped],
    lines: Sequence[int] | _LineFinder,
    expected_rows: int | None,
    *,
    source: str,
    window: Window | None,
    empty_error: type[Exception],
    what: str,
) -> Batch:
    """Count, sample and keep the staged rows (see :func:`validate`)."""
    in_window, wparams = "TRUE", {}
    if window is not None:
        in_window = "ts >= $start AND ts < $end"
        wparams = {
            "start": window.start.replace(tzinfo=None),
            "end": window.end.replace(tzinfo=None),
        }
    # A row with a valid timestamp outside the window is left aside, whatever its price.
    judged = f"reason IS NOT NULL AND (ts IS NULL OR {in_window})"
    (rows, outside) = one_row(
        con,
        f"SELECT count(*), count(*) FILTER (ts IS NOT NULL AND NOT ({in_window})) FROM staged",
        wparams,
    )
    if expected_rows is not None and rows + len(malformed) != expected_rows:
        raise Unaccounted(f"{rows + len(malformed)} of {expected_rows} lines read")
    rejected: Counter[str] = Counter(reason for _, reason, _ in malformed)
    found = [(line, reason, repr(text)) for line, reason, text in malformed]
    for reason, count, samples in execute(
        con,
        f"""SELECT reason, count(*),
                   list([rowid::VARCHAR, epoch_raw, price_raw] ORDER BY rowid)[1:{MAX_EXAMPLES}]
              FROM staged WHERE {judged} GROUP BY reason""",
        wparams,
    ).fetchall():
        rejected[reason] += count
        for rowid, epoch, price in samples:
            found.append((lines[int(rowid)], reason, f"time={cut(epoch)!r}, price={cut(price)!r}"))
    found.sort()
    ts, price_usd, duplicates, changed = _kept(con, in_window, wparams)
    examples = [f"{what} line {line}: {reason}" for line, reason, _ in found[:MAX_EXAMPLES]]
    for line, reason, raw in found[:MAX_EXAMPLES]:
        worker_log.warning("%s line %d: %s (%s)", what, line, reason, raw)
    received = rows - outside + len(malformed)
    batch = Batch(
        source, ts, price_usd, received, dict(rejected), examples, duplicates, [], changed, outside
    )
    if not batch.kept:
        where = f" in {window}" if window else ""
        detail = f"; {batch.summary()}" if received or outside else ""
        raise empty_error(f"{source}: no valid observation{where} in the {what}{detail}")
    log.info("%s", batch.summary())
    return batch


def _kept(
    con: duckdb.DuckDBPyConnection, in_window: str, wparams: Mapping[str, object]
) -> tuple[NDArray[np.datetime64], NDArray[np.float64], int, int]:
    """The staged rows kept, sorted by time, the later line winning where a timestamp repeats:
    their times and prices, how many rows collapsed, and how many of those had another price
    than the row that won. Rows already in strictly increasing time (the usual file) are taken
    as they are; only the others are grouped by time."""
    valid = f"FROM staged WHERE reason IS NULL AND {in_window}"
    ts, price_usd = _columns(con, f"SELECT ts, price AS price_usd {valid}", wparams)
    if (ts[1:] > ts[:-1]).all():  # in input order: a scan keeps it
        return ts, price_usd, 0, 0
    (changed,) = one_row(
        con,
        f"""SELECT count(*) FILTER (price <> winner)
              FROM (SELECT price, arg_max(price, rowid) OVER (PARTITION BY ts) AS winner {valid})""",
        wparams,
    )
    query = f"SELECT ts, arg_max(price, rowid) AS price_usd {valid} GROUP BY ts ORDER BY ts"
    kept_ts, kept_price = _columns(con, query, wparams)
    return kept_ts, kept_price, len(ts) - len(kept_ts), changed


def _columns(
    con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, object]
) -> tuple[NDArray[np.datetime64], NDArray[np.float64]]:
    """The ``ts`` and ``price_usd`` columns of ``query`` as NumPy arrays."""
    rows = execute(con, query, params).fetchnumpy()
    # DuckDB types the result loosely (arrays or pandas Categoricals): these two are arrays.
    return cast("NDArray[np.datetime64]", rows["ts"]), cast(
        "NDArray[np.float64]", rows["price_usd"]
    )


@overload
def cut(text: str, length: int | None = None) -> str: ...
@overload
def cut(text: None, length: int | None = None) -> None: ...
def cut(text: str | None, length: int | None = None) -> str | None:
    """Raw text cut to a readable length, saying how long it was (``length``, if the text is
    already a part of it)."""
    length = len(text or "") if length is None else length
    if text is None or length <= EXAMPLE_CHARS:
        return text
    return f"{text[:EXAMPLE_CHARS]}... ({length:,} characters)"


class _LineFinder:
    """The line of the ``i``-th row the reader delivered, stepping over the lines it skipped."""

    def __init__(self, first_line: int, skipped: list[int]):
        self.first_line = first_line
        self.skipped = sorted(skipped)

    def __getitem__(self, rowid: int) -> int:
        line = rowid + self.first_line
        for s in self.skipped:
            if s <= line:
                line += 1
        return line


def rows_sql(rows: list[tuple[object, object]]) -> str:
    """SQL selecting raw ``(epoch, price)`` pairs from a JSON payload as text, in order."""
    epochs = texts_sql([_text(e) for e, _ in rows])
    prices = texts_sql([_text(p) for _, p in rows])
    return f"SELECT unnest({epochs}) AS epoch, unnest({prices}) AS price"


def _text(value: object) -> str | None:
    """JSON scalars as text for the SQL parser; containers and booleans are not numbers."""
    if value is None or isinstance(value, bool | list | dict):
        return None if value is None else f"<{type(value).__name__}>"
    return str(value)
