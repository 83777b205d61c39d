"""Every number of the page, measured in one run on this machine (``measure``).

The machine is shared: every timing is a median of several runs, interleaved with its baseline.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from btc_core.settings import PROJECT_ROOT
from scripts.comparison import runs
from scripts.comparison.installs import environments, uv_cmd
from scripts.comparison.loc import lines_of_code
from scripts.comparison.project import project_facts

T = TypeVar("T")


@dataclass(frozen=True)
class Effort:
    """How many times each thing is measured."""

    warm_repeats: int  # warm runs per path (the bench modules want >= 5)
    cold_rounds: int  # rounds of cold runs of every path
    backend_runs: int  # 100-task flows per Prefect backend
    prefect_runs: int  # bench.prefect_cost: cold, trigger and warm-path runs
    install_repeats: int  # uv sync into a fresh venv, per environment


FULL = Effort(warm_repeats=7, cold_rounds=3, backend_runs=3, prefect_runs=5, install_repeats=3)
QUICK = Effort(warm_repeats=5, cold_rounds=1, backend_runs=1, prefect_runs=1, install_repeats=1)


def machine() -> dict[str, object]:
    """Date, CPUs, memory, Python, OS and the versions of what is compared."""
    with open("/proc/cpuinfo") as info:
        models = (line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        cpu = next(models, "")
    with open("/proc/meminfo") as info:
        mem_kib = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', release.read_text(), re.MULTILINE)
        os_name = f"{pretty.group(1) if pretty else ''}, Linux {platform.release()}".strip(", ")
    airflow_lock = tomllib.loads((PROJECT_ROOT / "airflow_port" / "uv.lock").read_text())
    packages = {package["name"]: package["version"] for package in airflow_lock["package"]}
    airflow = packages["apache-airflow"]
    uv = subprocess.run(uv_cmd("--version"), capture_output=True, text=True).stdout.split()[1]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": os_name,
        "versions": {
            "prefect": metadata.version("prefect"),
            "dagster": metadata.version("dagster"),
            "apache-airflow": airflow,
            "duckdb": metadata.version("duckdb"),
            "uv": uv,
        },
    }


def prefect_server_has_assets() -> bool:
    """Whether the installed self-hosted Prefect server has an assets API."""
    api = Path(str(metadata.distribution("prefect").locate_file("prefect/server/api")))
    return any(api.glob("*asset*"))


def measure(quick: bool) -> dict:
    """Every measurement, each step timed; ``quick`` measures fewer times (a smoke run)."""
    effort = QUICK if quick else FULL
    seconds: dict[str, float] = {}

    def step(name: str, take: Callable[[], T]) -> T:
        print(f"measuring {name} ...", flush=True)
        started = time.perf_counter()
        value = take()
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"  {name}: {seconds[name]:.0f} s", flush=True)
        return value

    # Cold starts as on a user's machine: Python may cache bytecode (.pyc). Some sandboxes set
    # PYTHONDONTWRITEBYTECODE, which makes every fresh process compile Prefect, Dagster or
    # Airflow from source again (seconds); the warm-up rounds write the caches.
    bytecode_was_disabled = bool(os.environ.pop("PYTHONDONTWRITEBYTECODE", ""))
    results: dict = {
        "quick": quick,
        "effort": vars(effort),
        "bytecode_was_disabled": bytecode_was_disabled,
        "seconds": seconds,
        "machine": step("machine", machine),
        "project": step("project", project_facts),
        "loc": step("loc", lines_of_code),
        "environments": step("environments", lambda: environments(effort.install_repeats)),
        "warm": step("warm", lambda: runs.warm_overheads(effort.warm_repeats)),
        "prefect_cost": step(
            "prefect_cost", lambda: runs.prefect_cost(effort.warm_repeats, effort.prefect_runs)
        ),
    }
    results["backends"], results["cold"] = step(
        "backends and cold",
        lambda: runs.backends_and_cold(
            effort.backend_runs, effort.warm_repeats, effort.cold_rounds
        ),
    )
    results["prefect_server_has_assets"] = prefect_server_has_assets()
    return results
