"""CPU seconds and memory of a running stack's processes, read with psutil (bench/capacity.py).

Each part is a process tree (the server, a worker and the flow-run processes it started, the warm
path) or the PostgreSQL backends serving one database. A tree's CPU is the sum, over its live
processes, of their own and their reaped children's user + system seconds: a flow-run process that
exited is counted in its worker's ``children_*`` times. A backend that exits between two samples
keeps the seconds it had when last seen (connections are pooled: few do).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import psutil

MIB = 1024 * 1024


def _own(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _reaped(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.children_user + times.children_system


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and every child they reaped."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            total += _own(proc) + _reaped(proc)
    return total


def children_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``'s descendants only (live, and those it reaped)."""
    try:
        root = psutil.Process(pid)
        return tree_cpu_s(pid) - _own(root)
    except psutil.NoSuchProcess:
        return 0.0


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` alone, MiB (0 if gone)."""
    try:
        return psutil.Process(pid).memory_info().rss / MIB
    except psutil.NoSuchProcess:
        return 0.0


@dataclass
class Meter:
    """The CPU-seconds counters of a stack: ``trees`` (part -> PID, the whole tree),
    ``workers`` (name -> worker PID: the workers' own seconds summed under ``workers``, those of
    the flow-run processes they started under ``flow-run processes``) and the backends of
    ``database`` (PostgreSQL)."""

    trees: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    database: str = ""
    _backends: dict[int, float] = field(default_factory=dict)

    def sample_backends(self) -> None:
        """Read the seconds of the backends serving the database now (call it often)."""
        if not self.database:
            return
        for proc in psutil.process_iter(["cmdline", "username"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["username"] == "postgres" and f" {self.database} " in cmdline:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    self._backends[proc.pid] = _own(proc)

    def totals(self) -> dict[str, float]:
        """Cumulative CPU seconds per part so far."""
        self.sample_backends()
        out = {name: tree_cpu_s(pid) for name, pid in self.trees.items()}
        if self.workers:
            flow_runs = {pid: children_cpu_s(pid) for pid in self.workers.values()}
            out["workers"] = sum(tree_cpu_s(pid) - flow_runs[pid] for pid in flow_runs)
            out["flow-run processes"] = sum(flow_runs.values())
        if self.database:
            out["PostgreSQL backends"] = sum(self._backends.values())
        return out

    def pid_of(self, part: str) -> int | None:
        """The process to profile for ``part`` (the first worker for the workers and their flow
        runs; None for PostgreSQL, which is no Python process)."""
        if part in ("workers", "flow-run processes"):
            return next(iter(self.workers.values()), None)
        return self.trees.get(part)

    def memory(self) -> dict[str, float]:
        """RSS of each tree's root and each worker, MiB."""
        return {name: rss_mib(pid) for name, pid in {**self.trees, **self.workers}.items()}
