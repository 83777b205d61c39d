"""Helpers shared by the per-orchestrator overhead benchmarks (standard library only, so the
Airflow environment can import them too)."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock milliseconds of one call."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def cold_floor_ms(cold: dict[str, float]) -> float:
    """The floor of the cold ratio (``bench.prefect_cost``'s cold medians): Prefect's empty flow
    as a script plus the plain run's own work, one interpreter start-up between them."""
    return cold["floor"] - cold["python"] + cold["plain"]


def overhead_args(description: str, argv: list[str] | None) -> argparse.Namespace:
    """``--repeats`` (>= 5, for a meaningful median) and ``--replay-file``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=7, help="warm runs per path (>= 5)")
    parser.add_argument("--replay-file", type=Path, help="CSV to replay (default: the slice)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 for a meaningful median")
    return args


def interleaved(
    repeats: int,
    plain: Callable[[Path], object],
    other: Callable[[Path], object],
    same_output: Callable[[Path, Path], bool],
) -> tuple[float, float]:
    """Median warm milliseconds of ``plain`` and ``other``, run alternately, each into a fresh
    DuckDB file; run 0 only warms both up. Stops if the two outputs ever differ."""
    plain_ms: list[float] = []
    other_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="btc-bench-") as tmp:
        for i in range(repeats + 1):
            plain_db, other_db = Path(tmp, f"plain{i}.duckdb"), Path(tmp, f"other{i}.duckdb")
            p = timed(lambda db=plain_db: plain(db))
            o = timed(lambda db=other_db: other(db))
            if not same_output(plain_db, other_db):
                raise SystemExit("the two paths disagree: run the parity test")
            if i:
                plain_ms.append(p)
                other_ms.append(o)
    return statistics.median(plain_ms), statistics.median(other_ms)


def print_overhead(replay: Path, repeats: int, label: str, base: float, other: float) -> None:
    """The medians, the overhead and the ratio against the plain baseline."""
    width = max(len(label), len("plain run_cycle"))
    print(f"replay slice: {replay.name}, {repeats} warm runs per path, medians")
    print(f"{'plain run_cycle':<{width}} : {base:8.1f} ms")
    print(f"{label:<{width}} : {other:8.1f} ms")
    print(f"{'overhead':<{width}} : {other - base:+8.1f} ms  (ratio {other / base:.1f}x)")
