"""End to end, hybrid: dockerd (provisioned by the tests), the flow image built from the local
debootstrap base, a self-hosted server, a Docker worker and a process worker whose secrets and
settings stay on the worker side (strict hybrid), task results in S3 on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from btc_core.fake_api import FakeApi
from deployments.deploy import setup_and_deploy
from deployments.runs import stop_schedules
from deployments.setup import ensure_automations, ensure_result_storage
from infra.image import INFRA, Build, build
from tests.docker import docker_answers
from tests.e2e.browser import Browser, browser_missing
from tests.e2e.hosts import S3, WorkerHost
from tests.plugin import WebhookSink
from tests.prefect.conftest import Server, _serve

# Crash detection for the tests: heartbeats every 30 s (Prefect's minimum), a run is a zombie
# after 60 s without one (production: docs/hybrid.md).
HEARTBEAT_S = 30
ZOMBIE_AFTER_S = 60
SECRET_SETTINGS = ("BTC_COINGECKO_API_KEY", "BTC_WEBHOOK_URL", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture(autouse=True)
def _prefect_services_per_test() -> Iterator[None]:
    """Prefect keeps one events worker and one log worker per process, bound to the first server
    they talked to: stop them around each test, so that in-process calls made against one
    server never send their events to another (later suites run flows in-process too)."""
    for service in (EventsWorker, APILogWorker):
        service.drain_all(timeout=10)
    yield
    for service in (EventsWorker, APILogWorker):
        service.drain_all(timeout=10)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """infra/provision.sh: docker.io, debootstrap and docker-compose from Debian; dockerd up."""
    if os.geteuid() != 0:
        if docker_answers():
            return
        pytest.skip("no Docker daemon, and provisioning one needs root (infra/provision.sh)")
    done = subprocess.run(
        ["bash", str(INFRA / "provision.sh")], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"infra/provision.sh failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the UI tests (Debian's, infra/provision-browser.sh)."""
    if why := browser_missing():
        pytest.skip(why)
    with Browser.start() as browser:
        yield browser


@pytest.fixture(scope="session")
def flow_image(docker_engine: None) -> Build:
    """The flow image: the debootstrap base once (kept), then infra/Dockerfile (layer cache)."""
    return build()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    with S3.start("btc-results", f"AKIA{uuid.uuid4().hex[:16].upper()}", uuid.uuid4().hex) as s3:
        yield s3


@pytest.fixture(scope="session")
def webhook_sink() -> Iterator[WebhookSink]:
    with WebhookSink.start() as sink:
        yield sink


@pytest.fixture(scope="session")
def strict_env(fake_api_server: FakeApi, webhook_sink: WebhookSink, s3: S3) -> dict[str, str]:
    """Worker-side settings and secrets of strict hybrid mode: secrets from the environment,
    artifacts without prices, notifications to a webhook whose URL is a secret."""
    return {
        "BTC_SECRETS_FROM": "env",
        "BTC_ARTIFACTS": "summary",
        "BTC_NOTIFY": "webhook",
        "BTC_WEBHOOK_URL": f"{webhook_sink.url}/services/T{uuid.uuid4().hex}",
        "BTC_COINGECKO_API_KEY": f"CG-{uuid.uuid4().hex}",
        "BTC_COINGECKO_URL": f"{fake_api_server.url}/coingecko",
        "BTC_COINBASE_URL": f"{fake_api_server.url}/coinbase",
        "BTC_RETRY_BASE_S": "0.1",
        "BTC_READ_TIMEOUT_S": "1",
        "BTC_EXTRACT_CACHE_S": "1",
        **s3.worker_env(),
    }


@pytest.fixture(scope="session")
def secrets(strict_env: dict[str, str]) -> dict[str, str]:
    """Label -> secret value, for the boundary scans."""
    return {name: strict_env[name] for name in SECRET_SETTINGS}


def docker_worker_settings() -> dict[str, str]:
    """Prefect settings of a Docker worker; it passes them on to the containers it starts."""
    return {
        "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "s3-bucket/btc-results",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
    }


@pytest.fixture(scope="package")
def hybrid_server(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> Iterator[Server]:
    """A self-hosted server (SQLite) set up and deployed, results block on S3, fast zombies."""
    gen = _serve(tmp_path_factory.mktemp("prefect-hybrid"))
    server = next(gen)
    try:
        setup_and_deploy(server.home, server.api_url)
        with server.client() as client:
            stop_schedules(client)
            ensure_result_storage(s3.bucket, s3.endpoint_url)
            ensure_automations(client, None, zombie_after_s=ZOMBIE_AFTER_S)
        yield server
    finally:
        gen.close()  # workers, then the server


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory: pytest.TempPathFactory, strict_env: dict[str, str]) -> WorkerHost:
    host = WorkerHost(tmp_path_factory.mktemp("docker-host"))
    host.write_env(strict_env)
    return host


@pytest.fixture(scope="package")
def docker_worker(hybrid_server: Server, flow_image: Build) -> subprocess.Popen:
    """A Docker worker polling every second."""
    return hybrid_server.worker(pool="btc-docker", poll_s=1.0, **docker_worker_settings())


@pytest.fixture(scope="session")
def process_host(tmp_path_factory: pytest.TempPathFactory) -> WorkerHost:
    return WorkerHost(tmp_path_factory.mktemp("process-host"))


@pytest.fixture(scope="package")
def process_worker(
    hybrid_server: Server, process_host: WorkerHost, strict_env: dict[str, str]
) -> subprocess.Popen:
    """A process worker: settings and secrets in its own environment; results on its disk."""
    return hybrid_server.worker(
        pool="btc-process",
        poll_s=1.0,
        BTC_DB_PATH=str(process_host.db),
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT_S),
        **strict_env,
    )
