"""Helpers shared by the per-orchestrator overhead benchmarks (standard library only, so the
Airflow environment can import them too)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock milliseconds of one call."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def overhead_args(description: str, argv: list[str] | None) -> argparse.Namespace:
    """``--repeats`` (>= 5, for a meaningful median) and ``--replay-file``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=7, help="warm runs per path (>= 5)")
    parser.add_argument("--replay-file", type=Path, help="CSV to replay (default: the slice)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be >= 5 for a meaningful median")
    return args
