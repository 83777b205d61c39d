"""``btc doctor``'s checks of the Prefect side, through Prefect's own client and settings.

btc_core knows no orchestrator: it finds these checks through the ``btc.doctor`` entry point
(pyproject.toml) and runs them where Prefect is installed. They look at the control plane the
way every Prefect command does (``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING`` from the
environment, the active profile, or the ``prefect.toml``/``.env`` of the working directory) and
at this project's own stack (``var/stack``, written by ``make up``), so a fix names the right
server.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterNextScheduledStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

from btc_core.doctor import Check
from deployments.names import DOCKER_POOL, PROCESS_POOL
from deployments.stack import Stack

WORKER_FRESH_S = 120  # a worker that polled within this many seconds counts as alive
START = {
    PROCESS_POOL: f"workers/start-process-worker.sh {PROCESS_POOL}",
    DOCKER_POOL: "make hybrid (or workers/start-docker-worker.sh on a Docker host)",
}
DEFAULT_PORT = 4200


def prefect_checks() -> list[Check]:
    """The control plane answers (with the right credentials), its backend, and for each of the
    project's pools: it exists, and a worker polls it whenever runs wait in it."""
    url = (PREFECT_API_URL.value() or "").rstrip("/")
    stack = Stack.load()
    if not url:
        return [_no_api_configured(stack)]
    with get_client(sync_client=True) as client:
        problem = _reach(client, url, stack)
        if problem:
            return [problem]
        checks = [Check("prefect api", True, f"{url} answers"), _backend(client)]
        for pool in (PROCESS_POOL, DOCKER_POOL):
            checks += _pool(client, pool)
    return checks


def _no_api_configured(stack: Stack) -> Check:
    if stack.running():
        return Check(
            "prefect api",
            False,
            f"PREFECT_API_URL is not set, but this project's server runs at {stack.url}",
            f"export PREFECT_API_URL={stack.api_url} (or run commands from the project folder)",
        )
    busy = (
        "" if _port_free(DEFAULT_PORT) else f" (port {DEFAULT_PORT} is in use by another program)"
    )
    return Check(
        "prefect api",
        False,
        f"no Prefect server configured: PREFECT_API_URL is not set{busy}",
        "make up (server + worker on this machine), or set PREFECT_API_URL to your server/Cloud",
    )


def _reach(client: SyncPrefectClient, url: str, stack: Stack) -> Check | None:
    """None when the API answers a real call; else what is wrong and the fix for it."""
    try:
        client.read_work_pools(limit=1)  # /health stays open under basic auth: ask a real endpoint
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status == 401:
            said = (
                "rejected the credentials in PREFECT_API_AUTH_STRING"
                if PREFECT_API_AUTH_STRING.value()
                else "wants credentials"
            )
            return Check(
                "prefect api",
                False,
                f"{url} {said} (HTTP 401)",
                "export PREFECT_API_AUTH_STRING=user:password (the server's "
                "PREFECT_SERVER_API_AUTH_STRING)",
            )
        return Check("prefect api", False, f"{url} answered HTTP {status}", "check the server log")
    except httpx.HTTPError:
        return Check("prefect api", False, f"{url} does not answer", _fix_unreachable(url, stack))
    return None


def _fix_unreachable(url: str, stack: Stack) -> str:
    if stack.running() and stack.api_url != url:
        return f"this project's server runs at {stack.url}: export PREFECT_API_URL={stack.api_url}"
    if stack.server_pid and not stack.running():
        return "the server recorded in var/stack has stopped: make up (starts it again)"
    return "make server (or make up), or fix PREFECT_API_URL"


def _backend(client: SyncPrefectClient) -> Check:
    """Which database the server uses, when it says so (it hides a full connection URL)."""
    try:
        answer = client.request("GET", "/admin/settings")
    except httpx.HTTPStatusError:  # Prefect Cloud has no admin settings
        return Check("database", True, "managed by the control plane (Prefect Cloud?)")
    database = answer.json().get("server", {}).get("database", {})
    said = f"{database.get('driver') or ''} {database.get('connection_url') or ''}"
    if "postgres" in said:
        return Check("database", True, "PostgreSQL")
    hint = (
        "under many concurrent task runs SQLite locks: use "
        "PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://user@host:5432/prefect"
    )
    kind = "SQLite: fine for a demo" if "sqlite" in said else "not shown (SQLite unless set)"
    return Check("database", True, f"{kind}; {hint}")


def _pool(client: SyncPrefectClient, pool: str) -> list[Check]:
    try:
        client.read_work_pool(pool)
    except ObjectNotFound:
        if pool == DOCKER_POOL:
            return []  # optional: created by make hybrid
        return [Check(f"pool {pool}", False, "does not exist", "python -m deployments.setup")]
    since = datetime.now(UTC) - timedelta(seconds=WORKER_FRESH_S)
    fresh = [
        w
        for w in client.read_workers_for_work_pool(pool)
        if w.last_heartbeat_time and w.last_heartbeat_time > since
    ]
    if fresh:
        checks = [
            Check(
                f"pool {pool}",
                True,
                f"{len(fresh)} worker(s) polled in the last {WORKER_FRESH_S} s",
            )
        ]
        return [*checks, check_docker()] if pool == DOCKER_POOL else checks
    waiting = _waiting_runs(client, pool)
    if pool == DOCKER_POOL and not waiting:
        return [Check(f"pool {pool}", True, "no worker polls it, and no run waits in it")]
    detail = (
        f"no worker polled recently, and {waiting} run(s) wait in it: they stay Late"
        if waiting
        else "no worker polled recently: runs will stay Late"
    )
    return [Check(f"pool {pool}", False, detail, f"start one on your machine: {START[pool]}")]


def _waiting_runs(client: SyncPrefectClient, pool: str) -> int:
    """Runs of the pool that are due or overdue (Scheduled up to now, Late, Pending)."""
    runs = client.read_flow_runs(
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
            ),
            next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                before_=datetime.now(UTC)
            ),
        ),
        limit=100,
    )
    return len(runs)


def check_docker(socket_path: str = "/var/run/docker.sock") -> Check:
    """The Docker daemon answers on its socket (needed by the Docker pool's worker)."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3)
            sock.connect(socket_path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            ok = b" 200 " in sock.recv(256)
    except OSError:
        ok = False
    return Check(
        "docker",
        ok,
        "daemon answers" if ok else f"no Docker daemon on {socket_path}",
        "bash infra/provision.sh (installs docker.io, starts dockerd)",
    )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
