"""The capacity benchmark's arithmetic (bench/capacity.py): pure functions on made-up or measured
numbers, tested in tests/unit/test_capacity.py."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

LATE_LIMIT_S = 60.0  # a run that started later than this after its expected start is refused


@dataclass(frozen=True)
class Run:
    """One run as the REST API shows it: created (the trigger), expected start, start, end."""

    state: str
    created: datetime
    expected_start: datetime | None
    started: datetime | None
    ended: datetime | None


def late_s(run: Run) -> float | None:
    """Seconds between the run's expected start and its start (None if it never started)."""
    if run.started is None or run.expected_start is None:
        return None
    return (run.started - run.expected_start).total_seconds()


def refusal(runs: Sequence[Run], late_limit_s: float = LATE_LIMIT_S) -> str | None:
    """Why a batch cannot be reported (a run not Completed, or started Late by more than
    ``late_limit_s``), or None if every run counts."""
    if not runs:
        return "no run was started"
    not_completed = [r.state for r in runs if r.state != "Completed" or r.ended is None]
    if not_completed:
        states = ", ".join(sorted(set(not_completed)))
        return f"{len(not_completed)} of {len(runs)} runs did not Complete ({states})"
    lates = [x for r in runs if (x := late_s(r)) is not None and x > late_limit_s]
    if lates:
        return f"{len(lates)} runs started Late by more than {late_limit_s:.0f} s (max {max(lates):.0f} s)"
    return None


def runs_per_minute(runs: Sequence[Run], window_s: float) -> float:
    """Completed runs per minute: over the offered window, or over first trigger -> last
    Completed when that took longer (the setup fell behind)."""
    done = [r.ended for r in runs if r.state == "Completed" and r.ended is not None]
    if not done:
        return 0.0
    span = (max(done) - min(r.created for r in runs)).total_seconds()
    return len(done) / max(span, window_s) * 60


def cpu_limit(cores: float, cpu_s_per_run: float) -> float:
    """Runs per minute ``cores`` could carry if they did nothing but runs."""
    if cpu_s_per_run <= 0:
        raise ValueError("CPU seconds per run must be positive")
    return cores * 60 / cpu_s_per_run


def fraction(achieved: float, limit: float) -> float:
    """The share of the CPU limit reached."""
    return achieved / limit if limit > 0 else 0.0


def cpu_per_run(
    before: Mapping[str, float], after: Mapping[str, float], runs: int
) -> dict[str, float]:
    """CPU seconds per run of each part (the same keys before and after), over ``runs`` runs."""
    if runs <= 0:
        raise ValueError("no run to divide by")
    return {key: max(after.get(key, 0.0) - before.get(key, 0.0), 0.0) / runs for key in after}


def bottleneck(per_run: Mapping[str, float]) -> tuple[str, float]:
    """The part with the most CPU seconds per run, and its share of the total."""
    total = sum(per_run.values())
    name = max(per_run, key=lambda k: per_run[k])
    return name, per_run[name] / total if total > 0 else 0.0


def slope_per_100(runs: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares growth of ``values`` (e.g. RSS in MiB) per 100 of ``runs`` (0 if flat
    or fewer than two distinct run counts)."""
    if len(set(runs)) < 2:
        return 0.0
    return statistics.linear_regression(runs, values).slope * 100


def saturated(offered: float, achieved: float, keep_up: float = 0.85) -> bool:
    """The setup no longer keeps up with the offered load."""
    return achieved < keep_up * offered
