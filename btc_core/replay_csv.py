"""Reading a replay CSV so that every line is accounted for, whatever it holds.

The format (docs/input.md): a header naming at least ``time`` and ``close``, then one record per
line, fields separated by commas and never quoted (the data are numbers), lines ending in ``\\n``
or ``\\r\\n``. The file is read as bytes (Latin-1), so a stray non-UTF-8 byte is a bad value in
its field, not a lost line. Blank lines are skipped and not counted.

Two readers give the same rows. The fast one is DuckDB's ``read_csv`` (parallel); but DuckDB
drops a line longer than its buffer without a word, and gives up on a stray carriage return, so
its rows are checked against a count of the file's lines (one pass over the bytes), and on any
shortfall or error the file is read again line by line in Python, where nothing can vanish.
"""

from __future__ import annotations

import stat
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from btc_core.errors import InputError
from btc_core.observations import EXAMPLE_CHARS, Skipped, Unaccounted, cut
from btc_core.sql import texts_sql

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MAX_HEADER_BYTES = 64 * 1024
MAX_COLUMNS = 1_000
MAX_LINE_BYTES = 2_097_152  # DuckDB's max_line_size: longer lines are rejected, not read
CHUNK_BYTES = 1 << 22
CHUNK_ROWS = 200_000
BOM = b"\xef\xbb\xbf"
COMMA_ENDS = (b",\n", b",\r\n")
REJECT_REASONS = {"TOO MANY COLUMNS": "too many fields", "MISSING COLUMNS": "too few fields"}


@dataclass(frozen=True)
class Layout:
    """What the header says: how many fields a record has, where time and close are, and how
    lines end (``\\r`` alone is left to the line-by-line reader)."""

    path: Path
    columns: int
    time: int
    close: int
    new_line: str


def read_layout(path: Path) -> Layout:
    """The header of ``path``; :class:`InputError` (one line) for a file that cannot be one."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise InputError(f"replay file {path} is not a regular file")
        with path.open("rb") as fh:
            head = fh.read(MAX_HEADER_BYTES + 2)
    except OSError as exc:
        raise InputError(f"cannot read replay file {path}: {exc.strerror or exc}") from None
    head = head.removeprefix(BOM)
    ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    end = min(ends, default=len(head))
    if end > MAX_HEADER_BYTES:
        raise InputError(
            f"replay file {path}: its first line is longer than {MAX_HEADER_BYTES // 1024} KiB, "
            "not a header (expected time,date,hour,open,high,close,...)"
        )
    terminator = head[end : end + 2]
    new_line = "\r\n" if terminator == b"\r\n" else terminator[:1].decode() or "\n"
    names = [name.strip(" ") for name in head[:end].decode("latin-1").split(",")]
    if len(names) > MAX_COLUMNS:
        raise InputError(
            f"replay file {path}: {len(names):,} columns in its header, not a price CSV"
        )
    missing = {"time", "close"} - set(names)
    if missing:
        raise InputError(
            f"replay file {path} has no column {', '.join(sorted(missing))} in its "
            "header (expected the shared/data format: time,date,hour,open,high,close,...)"
        )
    for name in ("time", "close"):
        if names.count(name) > 1:
            raise InputError(f"replay file {path} names the column {name!r} twice in its header")
    return Layout(path, len(names), names.index("time"), names.index("close"), new_line)


def count_records(path: Path) -> int:
    """Lines after the header, not counting blank lines at the end (one pass over the bytes).

    :class:`Unaccounted` if a line ends in a comma: DuckDB's reader takes that for a trailing
    delimiter and drops the empty last field, so ``5,`` under a two-column header would pass as
    a good row where the format counts one field too many."""
    import numpy as np  # here: only a replay needs it (bytes.find of ",\n" was 4x slower)

    newlines, size, tail, comma_end = 0, 0, b"", False
    with path.open("rb", buffering=0) as fh:
        buf = bytearray(CHUNK_BYTES)
        while n := fh.readinto(buf):
            newlines += buf.count(b"\n", 0, n)
            seam = tail[-2:] + bytes(buf[:2])  # an ending split between two reads
            comma_end = (
                comma_end
                or any(end in seam for end in COMMA_ENDS)
                or _comma_before_newline(np.frombuffer(buf, np.uint8, n))
            )
            size += n
            tail = (tail + bytes(buf[max(0, n - 4096) : n]))[-4096:]
    if not size:
        return 0
    if comma_end or tail.rstrip(b"\r\n").endswith(b","):
        raise Unaccounted("a line ends in a comma, which DuckDB's reader would drop")
    lines = newlines + (not tail.endswith(b"\n"))
    trailing = tail[len(tail.rstrip(b"\r\n")) :].count(b"\n")
    return max(0, lines - max(0, trailing - 1) - 1)


def _comma_before_newline(chunk: NDArray[np.uint8]) -> bool:
    """Whether a ``\n`` at offset 2 or later in ``chunk`` ends a line in a comma (``,\n`` or
    ``,\r\n``); the first two bytes are the seam's."""
    ends = (chunk[2:] == ord("\n")).nonzero()[0] + 2
    before = chunk[ends - 1]
    cr_comma = (before == ord("\r")) & (chunk[ends - 2] == ord(","))
    return bool(((before == ord(",")) | cr_comma).any())


def duckdb_rows(layout: Layout) -> str:
    """SQL reading the file with DuckDB (rows it cannot split land in ``reject_errors``)."""
    spec = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(layout.columns))
    path = str(layout.path).replace("'", "''")
    # No new_line option: DuckDB 1.4.4 then finds \n and \r\n itself; '\r\n' given explicitly
    # made it read nothing at all.
    return f"""SELECT c{layout.time} AS epoch, c{layout.close} AS price
        FROM read_csv('{path}', auto_detect = false, header = true, delim = ',', quote = '',
                      escape = '', columns = {{{spec}}}, encoding = 'latin-1',
                      strict_mode = true, ignore_errors = true, store_rejects = true,
                      max_line_size = {MAX_LINE_BYTES})"""


def duckdb_skipped(con: duckdb.DuckDBPyConnection) -> list[Skipped]:
    """Lines DuckDB's reader could not split, as (line, reason, text); valid after the scan.
    DuckDB keeps only the start of a line that is too long, so for one of those the file is read
    again line by line (:class:`Unaccounted`), which measures it."""
    skipped = con.execute(
        f"""SELECT line, kind, left(text, {EXAMPLE_CHARS}), length(text)
              FROM (SELECT line, any_value(error_type) AS kind,
                           trim(any_value(csv_line), chr(13) || chr(10)) AS text
                      FROM reject_errors GROUP BY line)
             ORDER BY line"""
    ).fetchall()
    if any(kind not in REJECT_REASONS for _, kind, _, _ in skipped):
        raise Unaccounted("DuckDB refused a line for another reason than its number of fields")
    return [
        (int(line), REJECT_REASONS[kind], cut(text or "", n)) for line, kind, text, n in skipped
    ]


@dataclass
class SlowRead:
    """The file read line by line into the temp table ``raw_lines``: the SQL selecting it, the
    line of each row, and the lines that could not be split."""

    sql: str
    lines: array
    skipped: list[Skipped]


def python_rows(con: duckdb.DuckDBPyConnection, layout: Layout) -> SlowRead:
    """Read the file line by line (``\\n``, ``\\r\\n`` or ``\\r`` end a line), so that no line is
    lost whatever its length; load the time and close fields into DuckDB in chunks."""
    con.execute("CREATE OR REPLACE TEMP TABLE raw_lines (epoch VARCHAR, price VARCHAR)")
    lines, skipped = array("q"), []
    epochs: list[str] = []
    prices: list[str] = []

    def flush() -> None:
        con.execute(
            f"INSERT INTO raw_lines SELECT unnest({texts_sql(epochs)}), unnest({texts_sql(prices)})"
        )
        epochs.clear()
        prices.clear()

    for number, text, length in _records(layout.path):
        if length > MAX_LINE_BYTES:
            skipped.append((number, "line too long", cut(text, length)))
            continue
        fields = text.split(",")
        if len(fields) != layout.columns:
            reason = "too many fields" if len(fields) > layout.columns else "too few fields"
            skipped.append((number, reason, cut(text)))
            continue
        lines.append(number)
        epochs.append(fields[layout.time])
        prices.append(fields[layout.close])
        if len(epochs) >= CHUNK_ROWS:
            flush()
    flush()
    return SlowRead("SELECT epoch, price FROM raw_lines", lines, skipped)


def _records(path: Path) -> Iterator[tuple[int, str, int]]:
    """(line number, text, length) of every non-blank line after the header; a line longer than
    :data:`MAX_LINE_BYTES` is measured, and only its start kept."""
    with path.open(encoding="latin-1", newline=None) as fh:  # universal newlines
        for number, piece in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), ""), 1):
            text = piece.removesuffix("\n")
            length = len(text)
            if length > MAX_LINE_BYTES:  # the rest of a long line, measured and dropped
                while piece and not piece.endswith("\n"):
                    piece = fh.readline(CHUNK_BYTES)
                    length += len(piece.removesuffix("\n"))
                text = text[:EXAMPLE_CHARS]
            if number > 1 and text:  # not the header, not a blank line
                yield number, text, length
