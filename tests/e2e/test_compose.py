"""infra/docker-compose.yml started for real, as ``make stack-up`` does it: every image built on
this machine (no registry), the stack up from nothing, a login through basic auth in headless
Chromium, a run through the stack's process worker and its Docker worker with task results on
the stack's S3, and ``down -v`` leaving no container, network or volume. One stack per session.
The time from ``up`` to healthy and the image builds go to var/compose-e2e.json."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from btc_core.pipeline import run_cycle
from btc_core.settings import PROJECT_ROOT, Settings
from deployments.hybrid import volume_export
from deployments.runs import stop_schedules
from infra.compose import COMPOSE_FILE, PUBLIC_FILE, Stack, build_images, compose_command
from infra.image import Build
from infra.ports import pick_port
from tests.e2e.browser import Browser
from tests.e2e.hosts import flow_run_containers
from tests.e2e.runs import run
from tests.e2e.test_docker_pool import export_of, wait_until
from tests.prefect.helpers import all_task_runs

# The first test that needs the stack pays for the image builds and the start (~4-10 min cold).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
DEPLOYMENTS = ("btc-pipeline/btc-hourly", "btc-pipeline/btc-hourly-docker")
TIMINGS = PROJECT_ROOT / "var" / "compose-e2e.json"


@dataclass
class Started:
    """A stack that came up, how long that took, and the runs made on it."""

    stack: Stack
    up_to_healthy_s: float
    builds: list[Build]
    runs: dict[str, FlowRun] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def auth(self) -> tuple[str, str]:
        user, password = self.stack.env["PREFECT_AUTH_STRING"].split(":", 1)
        return user, password


@pytest.fixture(scope="session")
def stack_images(flow_image: Build) -> tuple[dict[str, str], list[Build]]:
    """PostgreSQL, Redis and S3 images from infra/images/, built once (kept by content tag)."""
    return build_images(flow=flow_image)


def infra_compose(*args: str) -> subprocess.CompletedProcess[str]:
    """The documented command: ``python -m infra.compose ...`` (make stack-up, stack-down)."""
    command = [sys.executable, "-m", "infra.compose", *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def started(stack_images: tuple[dict[str, str], list[Build]]) -> Iterator[Started]:
    """``python -m infra.compose up`` for a project of its own (names, ports 4610+ and 4630+,
    data volume), from nothing: it finds the images built and starts the stack."""
    project = f"btccompose{uuid.uuid4().hex[:8]}"
    ports = ["--ui-port", str(pick_port(4610)), "--s3-port", str(pick_port(4630))]
    timings: dict[str, float] = {}
    try:
        done = infra_compose("up", "--project", project, *ports, "--data-volume", f"{project}_data")
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        healthy = re.search(r"healthy (\d+) s after `up`", done.stdout)
        assert healthy, done.stdout
        timings["up to healthy"] = float(healthy[1])
        yield Started(Stack(project), float(healthy[1]), stack_images[1], timings=timings)
    finally:
        Stack(project).down()  # no-op once the last test has done it
        TIMINGS.parent.mkdir(parents=True, exist_ok=True)
        images = {
            b.image: {"build_s": round(b.seconds, 1), "bytes": b.size_bytes}
            for b in stack_images[1]
        }
        TIMINGS.write_text(json.dumps({"seconds": timings, "images": images}, indent=2))


@pytest.fixture(scope="module")
def client(started: Started) -> Iterator[SyncPrefectClient]:
    settings = {
        PREFECT_API_URL: f"{started.stack.ui_url}/api",
        PREFECT_API_AUTH_STRING: started.stack.env["PREFECT_AUTH_STRING"],
    }
    with temporary_settings(settings), get_client(sync_client=True) as client:
        yield client


def compose_config(tmp_path: Path, *files: Path, **variables: str) -> subprocess.CompletedProcess:
    """``compose config`` of ``files`` with an env file of the required variables, minus those
    given as empty strings."""
    required = {
        "BTC_IMAGE_TAG": "0.1.0-test",
        "BTC_POSTGRES_IMAGE": "btc-postgres:test",
        "BTC_REDIS_IMAGE": "btc-redis:test",
        "BTC_S3_IMAGE": "btc-s3:test",
        "PREFECT_AUTH_STRING": "admin:s3cret",
        "POSTGRES_PASSWORD": "pg",
        "S3_SECRET_KEY": "s3",
    }
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**required, **variables}.items() if v))
    flags = [arg for f in files for arg in ("-f", str(f))]
    command = [*compose_command(), "--env-file", str(env_file), *flags, "config"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_compose_refuses_to_start_without_the_auth_string(docker_engine: None, tmp_path: Path):
    done = compose_config(tmp_path, COMPOSE_FILE, PREFECT_AUTH_STRING="")
    assert done.returncode != 0 and "PREFECT_AUTH_STRING" in done.stderr + done.stdout


def test_the_public_images_override_is_valid(docker_engine: None, tmp_path: Path):
    """Only its syntax can be checked here (no registry to pull from)."""
    done = compose_config(
        tmp_path, COMPOSE_FILE, PUBLIC_FILE, BTC_S3_IMAGE="chrislusf/seaweedfs:4.48"
    )
    assert done.returncode == 0, done.stderr
    s3 = yaml.safe_load(done.stdout)["services"]["s3"]
    assert s3["entrypoint"] == ["/usr/bin/weed"] and s3["command"][0] == "mini"


def test_every_image_is_built_here_and_none_is_latest(started: Started):
    config = started.stack.compose("config")
    assert config.returncode == 0, config.stderr
    images = {s["image"] for s in yaml.safe_load(config.stdout)["services"].values()}
    assert images == {b.image for b in started.builds}, images
    assert all(i.startswith("btc-") and not i.endswith(":latest") for i in images)


def test_the_api_refuses_calls_without_the_basic_auth_string(started: Started):
    api = f"{started.stack.ui_url}/api"
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200  # probes stay open
    assert httpx.post(f"{api}/flows/filter", json={}, timeout=10).status_code == 401
    wrong = httpx.post(f"{api}/flows/filter", json={}, auth=("admin", "wrong"), timeout=10)
    assert wrong.status_code == 401
    right = httpx.post(f"{api}/flows/filter", json={}, auth=started.auth, timeout=10)
    assert right.status_code == 200


def test_a_run_on_each_worker_completes_with_its_results_on_the_stacks_s3(
    started: Started, client: SyncPrefectClient, tmp_path: Path
):
    stack = started.stack
    stop_schedules(client)  # only the runs of this test
    # The pool mounts the stack's secrets folder (S3 keys for the flow containers), not /etc/btc;
    # the runs add this test's own data volume instead of the machine's btc-data.
    template = client.read_work_pool("btc-docker").base_job_template
    secrets = f"{stack.secrets_dir}:/run/btc:ro"
    assert secrets in template["variables"]["properties"]["volumes"]["default"]
    docker_job = {"volumes": [f"{stack.data_volume}:/data", secrets]}
    for name in DEPLOYMENTS:
        start = time.monotonic()
        started.runs[name] = run(client, name, docker_job if "docker" in name else None)
        started.timings[f"{name} trigger to final"] = round(time.monotonic() - start, 1)
        assert started.runs[name].state.name == "Completed", started.runs[name].state.message
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.s3_url,
        region_name="us-east-1",
        aws_access_key_id=stack.env["S3_ACCESS_KEY"],
        aws_secret_access_key=stack.env["S3_SECRET_KEY"],
    )
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket="btc-results").get("Contents", [])}
    for flow_run in started.runs.values():
        task_runs = all_task_runs(client, flow_run.id)
        assert len(task_runs) == 3  # extract, load (and its days' averages), notify
        keys = {t.state.data.storage_key for t in task_runs}
        assert keys <= stored, (flow_run.name, keys - stored)
        gone = wait_until(lambda run_id=flow_run.id: not flow_run_containers(run_id))
        assert gone, f"{flow_run.name}: its container was not removed (auto_remove)"
    # Both workers wrote the one DuckDB file of the stack's volume: the plain pipeline's output.
    plain = tmp_path / "plain.duckdb"
    run_cycle(Settings.from_env(env={}, db_path=plain, notify="none"))
    assert volume_export(f"btc-flow:{stack.env['BTC_IMAGE_TAG']}", stack.data_volume) == (
        json.loads(export_of(plain))
    )


def test_the_ui_asks_for_the_login_and_then_shows_both_runs(started: Started, browser: Browser):
    assert started.runs, "needs the runs of the previous test"
    browser.open(f"{started.stack.ui_url}/runs", "Login")
    browser.screenshot("production-stack-login")
    login = browser.driver.find_element(By.CSS_SELECTOR, "input[type=password]")
    login.send_keys(started.stack.env["PREFECT_AUTH_STRING"] + Keys.ENTER)
    browser.wait_for("Runs", "Completed", *(r.name for r in started.runs.values()))
    assert browser.driver.current_url.endswith("/runs")
    # Logged in for good (the password stays in the browser's storage): a fresh page shows no
    # leftover "Authentication failed" notice of the calls made before the login.
    browser.driver.refresh()
    browser.wait_for("btc-process", "btc-docker", *(r.name for r in started.runs.values()))
    assert "Login" not in browser.page_text()
    browser.screenshot("production-stack-runs")


def test_make_stack_down_leaves_no_container_network_or_volume(started: Started):
    stack, start = started.stack, time.monotonic()
    done = infra_compose("down", "--project", stack.project)
    started.timings["down -v"] = round(time.monotonic() - start, 1)
    assert done.returncode == 0 and "nothing left" in done.stdout, done.stdout + done.stderr
    assert stack.leftovers(f"{stack.project}_data") == []
    assert not stack.env_file.exists() and not stack.secrets_dir.exists()
