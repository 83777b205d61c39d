"""The process worker's own environment (deployments/worker_env.py): exactly the locked project
and its default groups, so nothing that ``make setup``, ``make dagster`` or ``make hybrid`` add to
the main environment (Dagster, Airflow's pins, prefect-docker, -kubernetes, -redis, -aws, the dev
tools) reaches the process worker or its flow runs; and both ways of starting that worker use it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from btc_core.settings import PROJECT_ROOT
from deployments.processes import start_worker
from deployments.worker_env import WORKER_VENV, sync, uv_path

# What the main environment gains from the other groups; none of it may reach the worker's.
NOT_FOR_THE_WORKER = (
    "dagster",
    "dagster-webserver",
    "apache-airflow",
    "prefect-docker",
    "prefect-kubernetes",
    "prefect-redis",
    "prefect-aws",
    "boto3",
    "selenium",
    "trio",
    "pytest",
    "moto",
)
INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)
COLLECTIONS = (
    "from importlib.metadata import entry_points; "
    "print(sorted(e.name for e in entry_points(group='prefect.collections')))"
)


def installed(python: Path) -> dict[str, str]:
    """Each distribution installed for ``python``, by canonical name, with its version."""
    out = subprocess.run([python, "-c", INSTALLED], capture_output=True, text=True, check=True)
    return {canonicalize_name(name): version for name, version in json.loads(out.stdout).items()}


def locked_default_groups() -> dict[str, str]:
    """What uv.lock pins for the project's default groups on this interpreter (markers applied),
    by canonical name, with its version; the project itself left out."""
    export = ["export", "--frozen", "--no-hashes", "--no-annotate", "--no-header"]
    out = subprocess.run(
        [uv_path(), *export, "--no-emit-project"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    ).stdout
    pinned = {}
    for line in out.splitlines():
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = requirement.strip().partition("==")
        pinned[canonicalize_name(name)] = version
    return pinned


def test_the_worker_environment_is_exactly_the_locked_default_groups() -> None:
    python = sync() / "python"
    found = installed(python)
    assert found.pop("btc-orchestration") == "0.1.0"
    assert found == locked_default_groups()
    assert [name for name in NOT_FOR_THE_WORKER if name in found] == []
    collections = subprocess.run([python, "-c", COLLECTIONS], capture_output=True, text=True)
    assert collections.stdout.strip() == "['prefect_dask']"  # btc-backfill-dask's task runner


def test_the_worker_script_runs_the_worker_on_that_environment_exactly(tmp_path: Path) -> None:
    """workers/start-process-worker.sh (make worker, the systemd unit) with a stand-in for uv
    that records how it was called."""
    fake_uv = tmp_path / "uv"
    fake_uv.write_text('#!/bin/sh\necho "$UV_PROJECT_ENVIRONMENT $*"\n')
    fake_uv.chmod(0o755)
    env = {
        **os.environ,
        "UV": str(fake_uv),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "BTC_WORKER_GROUPS": "platform lake",
    }
    out = subprocess.run(
        [PROJECT_ROOT / "workers" / "start-process-worker.sh", "btc-process"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(PROJECT_ROOT, out[0]) == WORKER_VENV
    assert out[1:7] == ["run", "--frozen", "--exact", "--compile-bytecode", "--group", "platform"]
    assert out[7:12] == ["--group", "lake", "prefect", "worker", "start"]


def test_start_worker_puts_its_environment_first_on_the_workers_path(tmp_path: Path) -> None:
    """``make up``'s worker (deployments/stack.py) is started from ``bin_dir``, first on its PATH
    (the ``python -m prefect.engine`` of its runs), before a PATH the caller passes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    prefect = bin_dir / "prefect"
    prefect.write_text('#!/bin/sh\necho "$0 $PATH"\n')
    prefect.chmod(0o755)
    log = tmp_path / "worker.log"
    worker = start_worker(tmp_path, "http://127.0.0.1:9/api", "p", log, bin_dir=bin_dir, PATH="/x")
    assert worker.wait(30) == 0
    assert log.read_text().split() == [str(prefect), f"{bin_dir}{os.pathsep}/x"]
