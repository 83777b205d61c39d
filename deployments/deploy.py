"""Setting a server up and deploying prefect.yaml to it, each step a subprocess (as a person runs
them): ``python -m deployments.setup`` (idempotent), then ``prefect deploy``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from btc_core.settings import PROJECT_ROOT
from deployments.names import DOCKER_POOL
from deployments.processes import BIN, prefect_env, run_checked


def prefect_cli(home: Path | str, api_url: str, *args: str, timeout_s: float = 300) -> str:
    """Run a ``prefect`` command against the stack; fail with its output."""
    return run_checked(
        [str(BIN / "prefect"), "--no-prompt", *args],
        prefect_env(home, api_url),
        timeout_s,
        what=f"prefect {' '.join(args)}",
    )


def setup_and_deploy(home: Path | str, api_url: str, docker: bool = True) -> str:
    """The idempotent Prefect setup, then the deployments of prefect.yaml whose pool it made
    (without ``docker``: not the Docker pool, nor its deployment). Returns setup's summary."""
    summary = run_checked(
        [sys.executable, "-m", "deployments.setup", *([] if docker else ["--no-docker-pool"])],
        prefect_env(home, api_url),
        timeout_s=300,
        what="deployments.setup",
    )
    if docker:
        prefect_cli(home, api_url, "deploy", "--all")
    else:
        names = [f"--name={name}" for name in deployment_names(exclude_pool=DOCKER_POOL)]
        prefect_cli(home, api_url, "deploy", *names)
    return summary


def deployment_names(exclude_pool: str = "") -> list[str]:
    """The deployments of prefect.yaml, but those of ``exclude_pool``."""
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    return [d["name"] for d in config["deployments"] if d["work_pool"]["name"] != exclude_pool]
