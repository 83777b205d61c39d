"""An independent oracle of the replay-file rules (docs/input.md), in plain Python: the ``csv``
module splits the lines, ``Decimal`` judges the timestamps exactly and ``float`` reads the prices
as the doubles the rules speak of. It shares no code with btc_core's SQL."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

MAX_EPOCH_S = 4_102_444_800  # 2100-01-01
NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
EPOCH_CHARS = set("+-.0123456789")
PRICE_CHARS = EPOCH_CHARS | set("eE")
N = TypeVar("N", Decimal, float)


@dataclass
class Expected:
    """What a correct reader must make of a file."""

    kept: dict[int, float] = field(default_factory=dict)  # epoch seconds -> price (later wins)
    rejected: Counter[str] = field(default_factory=Counter)
    lines: dict[str, list[int]] = field(default_factory=dict)  # reason -> lines, in order
    received: int = 0
    outside: int = 0
    duplicates: int = 0
    changed: int = 0


def _number(text: str, allowed: set[str], kind: Callable[[str], N]) -> N | None:
    """``kind(text)`` when ``text`` has only ``allowed`` characters and parses, else None."""
    if not set(text) <= allowed:
        return None
    try:
        return kind(text)
    except (ArithmeticError, ValueError):  # decimal's InvalidOperation is an ArithmeticError
        return None


def judge(epoch: str, price: str, now_s: int, max_price: float) -> tuple[str | None, int | None]:
    """(reason or None, epoch seconds if the timestamp is valid) for one row's two fields."""
    epoch, price = epoch.strip(" "), price.strip(" ")
    if not epoch:
        return "missing timestamp", None
    when = _number(epoch, EPOCH_CHARS, Decimal)
    if when is None:
        return "non-numeric timestamp", None
    if when != when.to_integral_value():
        return "timestamp not a whole second", None
    seconds = int(when)
    if not 0 <= seconds < MAX_EPOCH_S:
        return "timestamp out of range", None
    if not price:
        return "missing price", seconds
    if price.lower() in NON_FINITE:
        return "non-finite price", seconds
    value = _number(price, PRICE_CHARS, float)
    if value is None:
        return "non-numeric price", seconds
    if value <= 0:
        return "non-positive price", seconds
    if value > max_price:
        return "implausible price", seconds
    if seconds > now_s:
        return "timestamp in the future", seconds
    return None, seconds


def expected(
    data: bytes,
    now: datetime,
    max_price: float,
    window: tuple[datetime, datetime] | None = None,
) -> Expected:
    """Judge every line of a replay file the way the rules say."""
    text = data.decode("latin-1").removeprefix("\xef\xbb\xbf")
    lines = io.StringIO(text, newline="")
    reader = csv.reader(lines, quoting=csv.QUOTE_NONE, strict=False)
    header = [name.strip(" ") for name in next(reader)]
    where_time, where_close = header.index("time"), header.index("close")
    out = Expected()
    valid: list[tuple[int, float]] = []  # in file order
    now_s = int(now.timestamp())
    start, end = (int(w.timestamp()) for w in window) if window else (None, None)
    for fields in reader:
        line = reader.line_num
        if not fields:
            continue  # a blank line
        if len(fields) != len(header):
            reason = "too many fields" if len(fields) > len(header) else "too few fields"
            _reject(out, reason, line)
            continue
        reason, seconds = judge(fields[where_time], fields[where_close], now_s, max_price)
        if seconds is not None and start is not None and not start <= seconds < end:
            out.outside += 1
        elif reason:
            _reject(out, reason, line)
        else:
            valid.append((seconds, float(fields[where_close].strip(" "))))
    out.kept = dict(valid)  # the later line wins
    out.duplicates = len(valid) - len(out.kept)
    out.changed = sum(price != out.kept[seconds] for seconds, price in _losers(valid))
    out.received = len(valid) + sum(out.rejected.values())
    return out


def _reject(out: Expected, reason: str, line: int) -> None:
    out.rejected[reason] += 1
    out.lines.setdefault(reason, []).append(line)


def _losers(rows: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The rows a later row of the same timestamp replaces."""
    last = {seconds: i for i, (seconds, _) in enumerate(rows)}
    return [row for i, row in enumerate(rows) if last[row[0]] != i]


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
