"""``btc doctor``: check the setup, and give one line of fix for each problem found."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from dataclasses import replace as with_fields
from datetime import UTC, datetime

import requests

from btc_core.errors import BtcError, StoreBusy
from btc_core.settings import Settings
from btc_core.sources import build_source
from btc_core.store import Store


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text}\n     fix: {self.fix}" if self.fix and not self.ok else text


def check_store(settings: Settings) -> Check:
    """The store can be opened for writing and nobody holds it (local file), or the DuckLake's
    catalog and data path answer (``BTC_STORE_URL``)."""
    if settings.store_url:
        return _check_lake(settings)
    store = Store(settings.db_path, lock_timeout_s=1.0)
    try:
        with store.connect() as con:
            (n,) = con.execute("SELECT count(*) FROM observations").fetchone()  # type: ignore[misc]
    except StoreBusy as exc:
        return Check(
            "duckdb", False, str(exc), "wait for the running load, or stop the process holding it"
        )
    except (BtcError, OSError) as exc:
        return Check(
            "duckdb", False, str(exc), f"make {settings.db_path.parent} writable or set BTC_DB_PATH"
        )
    return Check("duckdb", True, f"{settings.db_path} writable, {n} observations")


def _check_lake(settings: Settings) -> Check:
    from btc_core.pipeline import store_for  # the pipeline imports this module's neighbours

    store = store_for(with_fields(settings, lock_timeout_s=1.0, pause_before_commit_s=0.0))
    try:
        with store.connect() as con:
            (n,) = con.execute("SELECT count(*) FROM observations").fetchone()  # type: ignore[misc]
    except (BtcError, OSError) as exc:
        return Check(
            "ducklake",
            False,
            str(exc),
            "check the catalog database of BTC_STORE_URL, BTC_LAKE_DATA_PATH, "
            "BTC_S3_ENDPOINT_URL and the AWS keys on this host (docs/ducklake.md)",
        )
    return Check("ducklake", True, f"{store.describe()} reachable, {n} observations")


def check_source(settings: Settings) -> Check:
    """The configured source answers with valid data (one request, no retries)."""
    source = build_source(settings.source, with_fields(settings, http_retries=0))
    try:
        batch = source.fetch(None)
    except BtcError as exc:
        fix = (
            "point BTC_REPLAY_FILE at a CSV shaped like shared/data"
            if settings.source == "replay"
            else f"check BTC_{settings.source.upper()}_URL, the network and the API key, or use --source replay"
        )
        return Check(f"source {settings.source}", False, str(exc), fix)
    return Check(f"source {settings.source}", True, batch.summary())


POOL = "btc-process"
DOCKER_POOL = "btc-docker"
WORKER_FRESH_S = 120  # a worker that polled within this many seconds counts as alive
START_WORKER = "workers/start-process-worker.sh btc-process"


class _Api:
    """Minimal REST access to a Prefect server or Prefect Cloud (no Prefect import)."""

    def __init__(self, settings: Settings):
        self.url = settings.prefect_api_url.rstrip("/")
        self.session = requests.Session()
        if settings.prefect_api_auth_string:
            user, _, password = settings.prefect_api_auth_string.partition(":")
            self.session.auth = (user, password)

    def call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return self.session.request(method, f"{self.url}{path}", timeout=5, **kwargs)  # type: ignore[arg-type]


def check_prefect(settings: Settings) -> list[Check]:
    """The control plane answers, the pools exist, a worker polls each, the backend suits."""
    if not settings.prefect_api_url:
        busy = (
            "" if _port_free(4200) else " (port 4200 is in use: is a server already running there?)"
        )
        return [
            Check(
                "prefect api",
                False,
                f"PREFECT_API_URL is not set{busy}",
                "make server, then export PREFECT_API_URL=http://127.0.0.1:4200/api",
            )
        ]
    api = _Api(settings)
    try:
        health = api.call("GET", "/health")
    except requests.RequestException:
        hint = (
            ""
            if _port_free(4200)
            else "; port 4200 is busy with something else: make server picks the next free port"
        )
        return [
            Check(
                "prefect api",
                False,
                f"{api.url} does not answer{hint}",
                "make server (or fix PREFECT_API_URL)",
            )
        ]
    if health.status_code == 200:  # /health stays open under basic auth: ask a real endpoint
        health = api.call("POST", "/flows/filter", json={"limit": 1})
    if health.status_code == 401:
        said = (
            "rejected the credentials in PREFECT_API_AUTH_STRING"
            if settings.prefect_api_auth_string
            else "wants credentials"
        )
        return [
            Check(
                "prefect api",
                False,
                f"{api.url} {said} (HTTP 401)",
                "export PREFECT_API_AUTH_STRING=user:password (the server's PREFECT_SERVER_API_AUTH_STRING)",
            )
        ]
    if health.status_code != 200:
        return [
            Check(
                "prefect api",
                False,
                f"{api.url} answered HTTP {health.status_code} ({health.request.path_url})",
                "check the server log",
            )
        ]
    checks = [Check("prefect api", True, f"{api.url} answers"), _backend(api)]
    for pool in (POOL, DOCKER_POOL):
        checks += _pool(api, pool)
    return checks


def _backend(api: _Api) -> Check:
    """Which database the server uses, when it says so (it hides a full connection URL)."""
    resp = api.call("GET", "/admin/settings")
    if resp.status_code != 200:  # Prefect Cloud has no admin settings
        return Check("database", True, "managed by the control plane (Prefect Cloud?)")
    database = resp.json().get("server", {}).get("database", {})
    driver = str(database.get("driver") or "")
    url = str(database.get("connection_url") or "")
    if "postgres" in driver or "postgres" in url:
        return Check("database", True, "PostgreSQL")
    hint = (
        "under many concurrent task runs SQLite locks: use "
        "PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://user@host:5432/prefect"
    )
    if "sqlite" in driver or "sqlite" in url:
        return Check("database", True, f"SQLite: fine for a demo; {hint}")
    return Check("database", True, f"not shown by the server (SQLite unless configured); {hint}")


def _pool(api: _Api, pool: str) -> list[Check]:
    found = api.call("GET", f"/work_pools/{pool}")
    if found.status_code == 404:
        if pool == DOCKER_POOL:
            return []  # optional
        return [Check(f"pool {pool}", False, "does not exist", "python -m deployments.setup")]
    workers = api.call("POST", f"/work_pools/{pool}/workers/filter", json={"limit": 50}).json()
    now = datetime.now(UTC)
    fresh = [
        w
        for w in workers
        if w.get("last_heartbeat_time")
        and (now - datetime.fromisoformat(w["last_heartbeat_time"])).total_seconds()
        < WORKER_FRESH_S
    ]
    start = START_WORKER if pool == POOL else "workers/start-docker-worker.sh"
    if fresh:
        checks = [
            Check(
                f"pool {pool}",
                True,
                f"{len(fresh)} worker(s) polled in the last {WORKER_FRESH_S} s",
            )
        ]
        return [*checks, check_docker()] if pool == DOCKER_POOL else checks
    if pool == DOCKER_POOL:  # optional: only a note while nobody uses it
        return [
            Check(f"pool {pool}", True, f"no worker polls it: its runs would stay Late ({start})")
        ]
    return [
        Check(
            f"pool {pool}",
            False,
            "no worker polled recently: runs will stay Late",
            f"start one on your machine: {start}",
        )
    ]


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


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix things."""
    return [check_store(settings), check_source(settings), *check_prefect(settings)]
