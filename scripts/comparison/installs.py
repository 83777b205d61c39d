"""Dependencies per environment: packages locked and installed, venv size, install time."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from btc_core.settings import PROJECT_ROOT

# path -> (the environment's name on the page, project folder, uv arguments choosing the groups)
ENVIRONMENTS = {
    "plain": ("core only (plain `btc`)", ".", ["--no-default-groups"]),
    "Prefect": ("core + Prefect", ".", ["--no-default-groups", "--group", "prefect"]),
    "Dagster": ("core + Dagster", ".", ["--no-default-groups", "--group", "dagster"]),
    "Airflow": ("core + Airflow (airflow_port/)", "airflow_port", ["--no-default-groups"]),
    "dev": ("main dev environment (all groups)", ".", ["--all-groups"]),
}


def uv_cmd(*args: str) -> list[str]:
    """uv as the Makefile finds it: ``UV`` (set by ``uv run``), else the ``uv`` on PATH."""
    return [os.environ.get("UV") or shutil.which("uv") or "uv", *args]


def locked(project: str, groups: list[str]) -> int:
    """Packages the lock file pins for this selection of groups (every platform)."""
    out = subprocess.run(
        uv_cmd("export", "--frozen", "--no-hashes", "--no-emit-project", "-q", *groups),
        cwd=PROJECT_ROOT / project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if "==" in line and not line.startswith(("#", "-e")))


def size_mib(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def installed(venv: Path) -> int:
    """Distributions installed in a venv, the projects of this repository excluded."""
    site = next(venv.glob("lib/python3*/site-packages"))
    names = [info.name for info in site.glob("*.dist-info")]
    ours = ("btc_orchestration", "btc_airflow_port")
    return sum(1 for name in names if not name.startswith(ours))


def environments(repeats: int) -> dict[str, dict]:
    """Per path's environment: its name, locked packages, and the median time of ``uv sync
    --frozen`` into a fresh venv (warm cache; never cleaned), its size and installed packages."""
    python = getattr(sys, "_base_executable", sys.executable)
    results = {}
    scratch = PROJECT_ROOT / "var" / "comparison"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="envs-", dir=scratch) as workdir:
        venv = Path(workdir) / "venv"
        for path, (name, project, groups) in ENVIRONMENTS.items():
            times = []
            for _ in range(repeats):
                shutil.rmtree(venv, ignore_errors=True)
                started = time.perf_counter()
                subprocess.run(
                    uv_cmd("sync", "--frozen", "-q", "--python", python, *groups),
                    cwd=PROJECT_ROOT / project,
                    env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
                    check=True,
                )
                times.append(time.perf_counter() - started)
            results[path] = {
                "name": name,
                "locked": locked(project, groups),
                "installed": installed(venv),
                "size_mib": size_mib(venv),
                "install_s": statistics.median(times),
                "install_runs_s": times,
            }
    return results
