"""`btc doctor` against deliberately broken setups: one line of fix for each problem."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from btc_core.doctor import check_store
from btc_core.settings import Settings
from btc_core.store import Store
from deployments.deploy import setup_and_deploy
from deployments.doctor import check_docker
from deployments.processes import start_server, stop
from infra.ports import pick_port
from tests.prefect.templates import seed_sqlite

pytestmark = pytest.mark.integration
BTC = Path(sys.executable).parent / "btc"


def doctor(tmp_path: Path, api_url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BTC_", "PREFECT_"))}
    env.update(PREFECT_API_URL=api_url, BTC_DB_PATH=str(tmp_path / "d.duckdb"), **extra)
    return subprocess.run([str(BTC), "doctor"], env=env, capture_output=True, text=True, timeout=60)


def test_no_server_says_how_to_start_one(tmp_path):
    out = doctor(tmp_path, "http://127.0.0.1:9/api")
    assert out.returncode == 1
    assert "FAIL prefect api: http://127.0.0.1:9/api does not answer" in out.stdout
    assert "fix: make server" in out.stdout


def test_a_pool_nobody_polls_means_runs_stay_late(postgres_server, tmp_path):
    setup_and_deploy(postgres_server.home, postgres_server.api_url)  # pools exist, no worker
    out = doctor(tmp_path, postgres_server.api_url)
    assert "ok   prefect api" in out.stdout and "ok   database:" in out.stdout
    assert "FAIL pool btc-process: no worker polled recently: runs will stay Late" in out.stdout
    assert (
        "fix: start one on your machine: workers/start-process-worker.sh btc-process" in out.stdout
    )
    assert out.returncode == 1


def test_a_healthy_setup_passes_with_a_backend_hint(prefect_server, process_worker, tmp_path):
    deadline = time.monotonic() + 90  # a worker that just started registers on its first poll
    while (
        out := doctor(tmp_path, prefect_server.api_url)
    ).returncode and time.monotonic() < deadline:
        time.sleep(2)
    assert out.returncode == 0, out.stdout
    assert "ok   pool btc-process: 1 worker(s) polled" in out.stdout
    assert "ok   database:" in out.stdout and "PREFECT_API_DATABASE_CONNECTION_URL" in out.stdout


def test_a_locked_duckdb_file_and_a_missing_docker_daemon_are_reported(tmp_path):
    settings = Settings.from_env(env={}, db_path=tmp_path / "held.duckdb")
    with Store(settings.db_path).connect():
        check = check_store(settings)
    assert not check.ok and "is busy" in check.detail
    docker = check_docker(str(tmp_path / "no.sock"))
    assert not docker.ok and "infra/provision.sh" in docker.fix


def test_a_server_behind_basic_auth_asks_for_the_right_credentials(tmp_path):
    auth = f"admin:{uuid.uuid4().hex}"
    port = pick_port(4600)
    seed_sqlite(tmp_path / "home")
    server = start_server(
        tmp_path / "home", port, tmp_path / "server.log", PREFECT_SERVER_API_AUTH_STRING=auth
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        missing = doctor(tmp_path, api)
        wrong = doctor(tmp_path, api, PREFECT_API_AUTH_STRING="admin:guess")
        right = doctor(tmp_path, api, PREFECT_API_AUTH_STRING=auth)
    finally:
        stop(server.pid, sigints=1)
    fix = "fix: export PREFECT_API_AUTH_STRING=user:password"
    assert f"FAIL prefect api: {api} wants credentials (HTTP 401)" in missing.stdout
    assert f"FAIL prefect api: {api} rejected the credentials" in wrong.stdout
    assert fix in missing.stdout and fix in wrong.stdout and missing.returncode == 1
    assert f"ok   prefect api: {api} answers" in right.stdout
    assert "FAIL pool btc-process: does not exist" in right.stdout  # gets past auth to the pools
    assert auth.split(":")[1] not in missing.stdout + wrong.stdout + right.stdout
