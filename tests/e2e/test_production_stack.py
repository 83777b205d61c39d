"""The production topology of infra/docker-compose.yml without compose: webserver
(``--no-services``) and background services as separate processes, PostgreSQL, Redis messaging,
basic auth; a process worker and a Docker worker. Then the data boundary on a Postgres dump."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deployments.deploy import setup_and_deploy
from deployments.postgres import postgres_available, postgres_url, scratch_database
from deployments.runs import stop_schedules
from deployments.setup import ensure_result_storage
from tests.e2e.boundary import close_prices, daily_averages, forbidden, leaks, pg_dump_text
from tests.e2e.conftest import docker_worker_settings
from tests.e2e.hosts import S3, WorkerHost
from tests.e2e.runs import run, settle
from tests.e2e.test_data_boundary import STRICT_PROCESS_JOB
from tests.e2e.topology import authed_client, production_stack, redis_db
from tests.prefect.conftest import Server
from tests.prefect.helpers import all_task_runs

pytestmark = pytest.mark.integration


@dataclass
class Production:
    server: Server
    auth: str
    database: str
    redis_index: int


def free_redis_pair() -> int:
    """Two adjacent empty Redis databases (messaging, docket) on the local Redis."""
    for index in range(8, 15, 2):
        if not redis_db(index).dbsize() and not redis_db(index + 1).dbsize():
            return index
    raise RuntimeError("no pair of empty Redis databases in 8..15")


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> Iterator[Production]:
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres")
    try:
        redis_index = free_redis_pair()
    except OSError as exc:
        pytest.skip(f"Redis is not reachable on 127.0.0.1:6379: {exc}")
    auth = f"admin:{uuid.uuid4().hex}"
    with scratch_database("btc_prefect_prod") as database:
        tmp = tmp_path_factory.mktemp("prefect-production")
        with production_stack(tmp, postgres_url(database), redis_index, auth) as server:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("PREFECT_API_AUTH_STRING", auth)  # for setup and deploy
                setup_and_deploy(server.home, server.api_url)
            with authed_client(server, auth) as client:
                stop_schedules(client)
                ensure_result_storage(s3.bucket, s3.endpoint_url)
            yield Production(server, auth, database, redis_index)


def test_the_api_refuses_calls_without_the_basic_auth_string(production: Production):
    api = production.server.api_url
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200  # probes stay open
    assert httpx.post(f"{api}/flows/filter", json={}, timeout=10).status_code == 401
    wrong = httpx.post(f"{api}/flows/filter", json={}, auth=("admin", "wrong"), timeout=10)
    assert wrong.status_code == 401
    user, password = production.auth.split(":", 1)
    ok = httpx.post(f"{api}/flows/filter", json={}, auth=(user, password), timeout=10)
    assert ok.status_code == 200


def test_authenticated_workers_run_flows_and_postgres_holds_no_price_or_secret(
    production: Production,
    flow_image,
    strict_env: dict[str, str],
    secrets: dict[str, str],
    replay_csv: Path,
    tmp_path: Path,
):
    server, auth = production.server, production.auth
    docker_host, process_host = WorkerHost(tmp_path / "docker"), WorkerHost(tmp_path / "process")
    docker_host.write_env(strict_env)
    server.worker(
        pool="btc-docker", poll_s=1.0, PREFECT_API_AUTH_STRING=auth, **docker_worker_settings()
    )
    server.worker(
        pool="btc-process",
        poll_s=1.0,
        PREFECT_API_AUTH_STRING=auth,
        BTC_DB_PATH=str(process_host.db),
        **strict_env,
    )
    with authed_client(server, auth) as client:
        runs = [
            run(client, "btc-pipeline/btc-hourly-docker", docker_host.job_variables()),
            run(client, "btc-pipeline/btc-hourly", STRICT_PROCESS_JOB),
        ]
        for flow_run in runs:
            assert flow_run.state.name == "Completed", flow_run.state.message
            settle(client, flow_run)
            # task runs reach the database through Redis and the separate services process
            assert len(all_task_runs(client, flow_run.id)) == 3  # extract, load, notify
    assert docker_host.counts() == process_host.counts() == (2208, 2208)
    assert redis_db(production.redis_index).exists("events")  # the messaging stream
    dump = pg_dump_text(production.database)
    assert "daily_avg refreshed for 92 day(s)" in dump and "rows received" in dump
    prices = close_prices(replay_csv) + daily_averages(docker_host.db)
    found = leaks(dump, forbidden(prices, {**secrets, "basic auth": auth.split(":", 1)[1]}))
    assert found == []
