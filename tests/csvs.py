"""Messy replay files built from the real slice: the cases real feeds produce."""

from pathlib import Path

HEADER = "time,date,hour,open,high,close,low,volumefrom,volumeto"


def rows(src: Path, n: int | None = None) -> list[str]:
    lines = src.read_text().splitlines()[1:]
    return lines[:n] if n else lines


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def with_close(line: str, close: str) -> str:
    cells = line.split(",")
    cells[5] = close
    return ",".join(cells)


def messy(src: Path, dst: Path, first_day: str = "2021-03-01", days: int = 45) -> Path:
    """A file real feeds produce, from real rows: gaps, duplicates with a corrected price (the
    later wins), out-of-order blocks, and invalid rows of every kind, plus a truncated tail."""
    lines = [r for r in rows(src) if r.split(",")[1] >= first_day][: days * 24]
    lines = [r for i, r in enumerate(lines) if i % 37 not in (5, 6, 7)]  # gaps
    for i in range(10, len(lines), 101):  # duplicate timestamps, corrected later
        lines.insert(
            i + 3, with_close(lines[i], str(round(float(lines[i].split(",")[5]) + 1.25, 2)))
        )
    lines[200:260] = reversed(lines[200:260])  # out of order
    bad = [
        with_close(lines[50], "n/a"),
        with_close(lines[51], "-17.5"),
        with_close(lines[52], "0"),
        with_close(lines[53], "NaN"),
        with_close(lines[54], "1e12"),
        "not-a-time" + lines[55][lines[55].index(",") :],
        with_close(lines[56], "1,5"),
    ]
    for j, row in enumerate(bad):
        lines.insert(300 + 40 * j, row)
    lines.append(lines[-1].rsplit(",", 4)[0])  # truncated last line
    return write(dst, lines)
