"""Setting a server up and deploying prefect.yaml to it, each step a subprocess (as a person runs
them): ``python -m deployments.setup`` (idempotent), then ``prefect deploy`` with the code
source of ``BTC_CODE_SOURCE`` (deployments/code_source.py).

    python -m deployments.deploy --all           # prefect deploy, with BTC_CODE_SOURCE applied,
    python -m deployments.deploy --name btc-hourly   # against the server of PREFECT_API_URL
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from btc_core.settings import PROJECT_ROOT
from deployments import code_source
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
        targets = ["--all"]
    else:
        targets = [f"--name={name}" for name in deployment_names(exclude_pool=DOCKER_POOL)]
    with tempfile.TemporaryDirectory() as folder:
        prefect_cli(home, api_url, "deploy", *targets, *code_args(Path(folder)))
    return summary


def code_args(folder: Path) -> list[str]:
    """``--prefect-file`` of a prefect.yaml with the code source of ``BTC_CODE_SOURCE`` written
    in ``folder``; its warning (a dirty tree, no checkout) goes to stderr."""
    source, warning = code_source.choose()
    if warning:
        print(warning, file=sys.stderr)
    return ["--prefect-file", str(code_source.prefect_file(source, folder))]


def deployment_names(exclude_pool: str = "") -> list[str]:
    """The deployments of prefect.yaml, but those of ``exclude_pool``."""
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    return [d["name"] for d in config["deployments"] if d["work_pool"]["name"] != exclude_pool]


def main(argv: Sequence[str] | None = None) -> int:
    """``prefect deploy ARGS`` from the project folder with ``BTC_CODE_SOURCE`` applied."""
    args = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as folder:
        command = [str(BIN / "prefect"), "--no-prompt", "deploy", *args, *code_args(Path(folder))]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=os.environ).returncode


if __name__ == "__main__":
    sys.exit(main())
