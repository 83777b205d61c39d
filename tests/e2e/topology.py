"""The production topology of infra/docker-compose.yml, without compose (no images can be pulled
here): the API/UI webserver with ``--no-services`` and the background services as separate
processes, on the local PostgreSQL, with messaging on the local Redis (prefect-redis) and basic
auth on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from btc_core.settings import PROJECT_ROOT
from deployments.processes import BIN, prefect_env, stop, wait_for_api
from infra.ports import pick_port
from tests.prefect.conftest import Server

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def redis_settings(db: int) -> dict[str, str]:
    """Prefect's documented Redis setup: broker, cache, causal ordering, leases, docket."""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": REDIS_HOST,
        "PREFECT_REDIS_MESSAGING_PORT": str(REDIS_PORT),
        "PREFECT_REDIS_MESSAGING_DB": str(db),
        "PREFECT_SERVER_DOCKET_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{db + 1}",
    }


def redis_db(db: int) -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "prefect"), *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=PROJECT_ROOT,
    )


@contextmanager
def production_stack(tmp: Path, db_url: str, redis_index: int, auth: str) -> Iterator[Server]:
    """Migrate, then start the webserver and the services; workers are added by the caller
    (``Server.worker``, with ``PREFECT_API_AUTH_STRING``). Everything stops on exit and the two
    Redis databases used are flushed."""
    home, logs = tmp / "prefect-home", tmp / "logs"
    home.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    env = prefect_env(
        home,
        PREFECT_API_DATABASE_CONNECTION_URL=db_url,
        PREFECT_API_DATABASE_MIGRATE_ON_START="false",
        PREFECT_SERVER_API_AUTH_STRING=auth,
        **redis_settings(redis_index),
    )
    subprocess.run(
        [str(BIN / "prefect"), "server", "database", "upgrade", "-y"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    port = pick_port(4500)
    api_url = f"http://127.0.0.1:{port}/api"
    procs = []
    server = Server(api_url, home, logs, db_url)
    try:
        api_args = ["server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-services"]
        procs.append(_spawn(api_args, env, logs / "api.log"))
        wait_for_api(api_url, proc=procs[0])
        procs.append(_spawn(["server", "services", "start"], env, logs / "services.log"))
        yield server
    finally:
        server.stop_workers()
        for proc in reversed(procs):
            stop(proc.pid, sigints=1)
        for index in (redis_index, redis_index + 1):
            redis_db(index).flushdb()


@contextmanager
def authed_client(server: Server, auth: str) -> Iterator[SyncPrefectClient]:
    """A client of a server with basic auth on."""
    with (
        temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: auth}),
        get_client(sync_client=True) as client,
    ):
        yield client
