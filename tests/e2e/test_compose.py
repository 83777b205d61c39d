"""infra/docker-compose.yml: valid for Docker Compose, and shaped like a production stack."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from infra.image import INFRA

pytestmark = pytest.mark.integration
COMPOSE = INFRA / "docker-compose.yml"
REQUIRED = {
    "PREFECT_AUTH_STRING": "admin:s3cret",
    "POSTGRES_PASSWORD": "pg",
    "MINIO_ROOT_PASSWORD": "minio-pw",
    "BTC_IMAGE_TAG": "0.1.0-test",
}


def compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose`` (Debian's, installed by infra/provision.sh) or ``docker compose``."""
    command = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [*command, "-f", str(COMPOSE), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def words(command: str | list[str]) -> str:
    return command if isinstance(command, str) else " ".join(command)


@pytest.fixture(scope="module")
def config(docker_engine: None) -> dict:
    """The resolved configuration, as Compose itself validates and prints it."""
    done = compose("config", **REQUIRED)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_refuses_to_start_without_the_auth_string(docker_engine: None):
    without_auth = {k: v for k, v in REQUIRED.items() if k != "PREFECT_AUTH_STRING"}
    done = compose("config", **without_auth)
    assert done.returncode != 0 and "PREFECT_AUTH_STRING" in done.stderr + done.stdout


def test_webserver_and_services_are_separate_processes_on_postgres_and_redis(config):
    services = config["services"]
    assert "--no-services" in words(services["prefect-api"]["command"])
    assert words(services["prefect-services"]["command"]).endswith("server services start")
    for name in ("prefect-migrate", "prefect-api", "prefect-services"):
        env = services[name]["environment"]
        assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
        assert env["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
        assert env["PREFECT_SERVER_API_AUTH_STRING"] == REQUIRED["PREFECT_AUTH_STRING"]
    assert services["prefect-api"]["ports"]  # published for the UI (on 127.0.0.1 only)
    assert {"postgres", "redis", "minio"} <= set(services)


def test_workers_authenticate_and_never_run_a_latest_image(config):
    services = config["services"]
    for name in ("process-worker", "docker-worker", "btc-setup"):
        assert services[name]["environment"]["PREFECT_API_AUTH_STRING"] == "admin:s3cret"
        assert services[name]["network_mode"] == "host"
    assert "--pool btc-docker" in words(services["docker-worker"]["command"])
    assert any("docker.sock" in str(v) for v in services["docker-worker"]["volumes"])
    assert "--pool btc-process" in words(services["process-worker"]["command"])
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
    assert services["prefect-api"]["image"] == "btc-flow:0.1.0-test"
