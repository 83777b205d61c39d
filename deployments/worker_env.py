"""The process worker's own environment, ``var/worker-venv``: the project and its default
dependency groups, synced exactly from uv.lock (``uv sync`` removes whatever else is there).

The main environment (``.venv``) gains Dagster, prefect-docker, -kubernetes, -redis, -aws and the
dev tools from ``make setup``, ``make dagster`` and ``make hybrid``; none of that reaches the
process worker's flow runs, which start ``python -m prefect.engine`` from the worker's PATH
(deployments/setup.py), so from here. ``BTC_WORKER_GROUPS`` adds dependency groups by name,
space-separated: ``platform`` for ``BTC_CODE_SOURCE=s3`` or S3 results, ``lake`` for a DuckLake.

``make up`` syncs it through :func:`sync`; ``workers/start-process-worker.sh`` (``make worker``,
the systemd unit) runs ``uv run --exact`` on it with the same groups.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from btc_core.settings import PROJECT_ROOT
from deployments.processes import run_checked

WORKER_VENV = PROJECT_ROOT / "var" / "worker-venv"
GROUPS_SETTING = "BTC_WORKER_GROUPS"


def group_args(groups: str | None = None) -> list[str]:
    """``--group NAME`` for each name of ``groups`` (default: ``BTC_WORKER_GROUPS``)."""
    names = os.environ.get(GROUPS_SETTING, "") if groups is None else groups
    return [arg for name in names.split() for arg in ("--group", name)]


def uv_path() -> str:
    """The uv of ``uv run`` (it sets ``UV``), else the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise RuntimeError("no uv: run `make uv` (scripts/bootstrap_uv.py installs it)")
    return found


def sync(venv: Path = WORKER_VENV, groups: str | None = None) -> Path:
    """Make ``venv`` hold exactly the locked project with its default groups (and ``groups``);
    return its ``bin`` folder, the one to put first on the worker's PATH."""
    run_checked(
        [uv_path(), "sync", "--frozen", "--quiet", *group_args(groups)],
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        timeout_s=900,
        what=f"uv sync of the worker environment {venv}",
    )
    return venv / "bin"
