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
