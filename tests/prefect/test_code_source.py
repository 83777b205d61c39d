"""Code delivery to a worker host that shares nothing with the deployer but the API and the code
source (BTC_CODE_SOURCE, docs/hybrid.md): the deployer is a copy of the project in a folder of
its own, deploys as ``make up`` does, then loses its ``flows/``; a process worker started with
``workers/start-process-worker.sh`` from a second checkout (a git clone elsewhere, its own
environment made by the script) completes btc-hourly with the deployed code and keeps the data.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from deployments.processes import prefect_env, stop
from deployments.runs import run_now, stop_schedules
from tests.e2e.hosts import S3
from tests.e2e.test_readme import fresh_copy, new_shell
from tests.prefect.conftest import Server

pytestmark = pytest.mark.integration
GIT = ["git", "-c", "user.name=deployer", "-c", "user.email=deployer@example.invalid"]
# The deployed commit says where its btc_core is imported from: the worker's checkout lacks it.
MARKER = 'print("btc_core imported from", __file__, flush=True)\n'
UNSET = {"BTC_CODE_SOURCE": "", "BTC_CODE_REPOSITORY": ""}  # the developer's, if any: empty
# make up's setup and deploy (deployments/stack.py), run in the deployer's folder.
MAKE_UP = (
    "import os; from deployments.deploy import setup_and_deploy; "
    "setup_and_deploy(os.environ['PREFECT_HOME'], os.environ['PREFECT_API_URL'], docker=False)"
)


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        [*GIT, *args], cwd=folder, check=True, capture_output=True, text=True
    ).stdout.strip()


def two_checkouts(tmp: Path) -> tuple[Path, Path]:
    """The deployer (this checkout's tracked files, one commit, then the marker commit) and the
    worker's checkout, cloned from the deployer before the marker."""
    deployer, worker = tmp / "deployer", tmp / "elsewhere" / "btc-orchestration"
    fresh_copy(deployer)
    git(deployer, "init", "-q", "-b", "main")
    git(deployer, "add", "-A")
    git(deployer, "commit", "-q", "-m", "the project")
    git(tmp, "clone", "-q", str(deployer), str(worker))
    with (deployer / "btc_core" / "__init__.py").open("a") as init:
        init.write(MARKER)
    git(deployer, "commit", "-q", "-am", "deployed: btc_core says where it is imported from")
    return deployer, worker


def deploy(server: Server, deployer: Path, *python_args: str, **env: str) -> str:
    """``python python_args`` in the deployer's folder against ``server``; its stderr (the code
    source's warnings)."""
    result = subprocess.run(
        [sys.executable, *python_args],
        cwd=deployer,
        env=prefect_env(server.home, server.api_url, **{**UNSET, **env}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with server.client() as client:  # only the run the test starts
        stop_schedules(client)
    return result.stderr


@contextmanager
def worker_host(server: Server, checkout: Path, log: Path, **env: str) -> Iterator[None]:
    """The real worker script in ``checkout``, from a new shell's environment."""
    proc = subprocess.Popen(
        ["workers/start-process-worker.sh"],
        cwd=checkout,
        env={
            **new_shell(),
            "PREFECT_API_URL": server.api_url,
            "PREFECT_HOME": str(checkout.parent / "prefect-home"),
            "BTC_WORKER_POLL_S": "0.5",
            **env,
        },
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        stop(proc.pid, sigints=2)


def completes_btc_hourly(server: Server, deployer: Path, worker: Path, log: Path) -> None:
    """A btc-hourly run Completed on the worker host, with the deployed btc_core (imported from
    the run's own copy: neither the deployer's folder nor the worker's checkout), and its data
    in the worker's checkout."""
    run = run_now(server.api_url, "btc-pipeline/btc-hourly", timeout_s=120)
    assert run.state and run.state.is_completed(), f"{run.state}\n{log.read_text()[-3000:]}"
    imported = [line.split()[-1] for line in log.read_text().splitlines() if "imported" in line]
    assert imported, log.read_text()[-3000:]
    assert not imported[-1].startswith((str(deployer), str(worker))), imported
    with duckdb.connect(str(worker / "var" / "btc.duckdb"), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM daily_avg").fetchone() == (92,)


def test_worker_host_at_another_path_completes_btc_hourly_from_git(bare_server, tmp_path):
    """The acceptance line of issue 30: BTC_CODE_SOURCE unset (git, cloned from the deployer's
    repository, pinned to the deployed commit), the deployer's flows/ gone."""
    deployer, worker = two_checkouts(tmp_path)
    (deployer / "notes.txt").write_text("not committed")
    warning = deploy(bare_server, deployer, "-c", MAKE_UP)
    assert "uncommitted changes do not travel with git_clone" in warning
    shutil.rmtree(deployer / "flows")
    log = tmp_path / "worker.log"
    with worker_host(bare_server, worker, log):
        completes_btc_hourly(bare_server, deployer, worker, log)
    assert "git_clone" in log.read_text()


def test_worker_host_code_source_s3_on_moto(bare_server, tmp_path):
    """BTC_CODE_SOURCE=s3: the deployer uploads the code (push_to_s3) to moto's S3 server, the
    worker host (its worker environment with the platform group, BTC_WORKER_GROUPS=platform, as
    docs/hybrid.md says) downloads it per run (pull_from_s3); keys and endpoint are the standard
    AWS_* variables of each side."""
    deployer, worker = two_checkouts(tmp_path)
    with S3.start("btc-code", "code-key", "code-secret") as s3:
        aws = {
            **s3.worker_env(),
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        deploy(bare_server, deployer, "-m", "deployments.setup", "--no-docker-pool")
        by_hand = ["-m", "deployments.deploy", "--name", "btc-hourly"]
        assert "warning" not in deploy(bare_server, deployer, *by_hand, BTC_CODE_SOURCE="s3", **aws)
        commit = git(deployer, "rev-parse", "HEAD")
        keys = s3.object_keys()
        assert f"btc-orchestration/{commit}/flows/btc.py" in keys
        assert not [k for k in keys if "/var/" in k or "/.git/" in k or "/tests/" in k]
        shutil.rmtree(deployer)
        log = tmp_path / "worker.log"
        with worker_host(bare_server, worker, log, BTC_WORKER_GROUPS="platform", **aws):
            completes_btc_hourly(bare_server, deployer, worker, log)
        assert "pull_from_s3" in log.read_text()
