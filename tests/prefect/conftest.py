"""A real Prefect server (SQLite, and Postgres), real deployments, a real process worker."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.settings.legacy import Setting

from btc_core.fake_api import FakeApi
from deployments.deploy import setup_and_deploy
from deployments.postgres import postgres_available, postgres_url, scratch_database
from deployments.processes import PortTaken, start_server, start_worker, stop, stop_worker
from deployments.runs import stop_schedules
from infra.ports import pick_port
from tests.prefect.templates import postgres_template, seed_sqlite

NO_POSTGRES = "PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres"


@dataclass
class Server:
    """A running Prefect server and where its state lives."""

    api_url: str
    home: Path
    logs: Path
    db_url: str = ""
    workers: list[subprocess.Popen] = field(default_factory=list)

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        with (
            temporary_settings({PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            yield client

    @contextmanager
    def in_process(self, settings: dict[Setting, object] | None = None) -> Iterator[Server]:
        """Flows run in this process report to this server. Prefect's events worker is a process
        singleton bound to the API URL it first saw (and task runs reach the server as events),
        so it is drained before and after: tests on different servers in one session then
        never send their task runs to the wrong one."""
        EventsWorker.drain_all()
        try:
            with temporary_settings({PREFECT_API_URL: self.api_url, **(settings or {})}):
                yield self
        finally:
            EventsWorker.drain_all()

    def worker(
        self, pool: str = "btc-process", poll_s: float = 1.0, **env: str
    ) -> subprocess.Popen:
        proc = start_worker(
            self.home,
            self.api_url,
            pool,
            self.logs / f"worker-{len(self.workers)}.log",
            poll_s,
            **env,
        )
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop_worker(proc.pid)  # its runs end Crashed, not Running; no second signal
        self.workers.clear()


def _serve(tmp: Path, db_url: str = "", first_port: int = 4300) -> Iterator[Server]:
    home, logs = tmp / "prefect-home", tmp / "logs"
    env = {"PREFECT_API_DATABASE_CONNECTION_URL": db_url} if db_url else {}
    if not db_url:
        seed_sqlite(home)
    for attempt in range(3):  # another session on this machine may win the race for a port
        port = pick_port(first_port)
        try:
            proc = start_server(home, port, logs / "server.log", **env)
            break
        except PortTaken:
            if attempt == 2:
                raise
    server = Server(f"http://127.0.0.1:{port}/api", home, logs, db_url)
    try:
        yield server
    finally:
        server.stop_workers()  # workers before the server
        stop(proc.pid, sigints=1)


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A self-hosted server on SQLite, set up and deployed."""
    gen = _serve(tmp_path_factory.mktemp("prefect-sqlite"))
    server = next(gen)
    setup_and_deploy(server.home, server.api_url)
    with server.client() as client:  # only the runs a test starts: none by the clock
        stop_schedules(client)
    yield server
    gen.close()


@contextmanager
def postgres_serve(tmp: Path, first_port: int = 4300) -> Iterator[Server]:
    """A self-hosted server on the local PostgreSQL, in a database of its own (dropped after)."""
    if not postgres_available():
        pytest.skip(NO_POSTGRES)
    with scratch_database("btc_prefect_test", template=postgres_template()) as name:
        gen = _serve(tmp, postgres_url(name), first_port)
        yield next(gen)
        gen.close()


@pytest.fixture(scope="package")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A self-hosted server on SQLite with nothing set up: for tests that bring their own pools
    (the cluster pools stay off ``prefect_server``, where ``btc doctor`` checks every pool)."""
    gen = _serve(tmp_path_factory.mktemp("prefect-bare"))
    yield next(gen)
    gen.close()


@pytest.fixture(scope="package")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A self-hosted server on the local PostgreSQL, in a database of its own."""
    with postgres_serve(tmp_path_factory.mktemp("prefect-pg")) as server:
        yield server


@pytest.fixture(scope="package")
def worker_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-data") / "btc.duckdb"


@pytest.fixture(scope="package")
def process_worker(
    prefect_server: Server, fake_api_server: FakeApi, worker_db: Path
) -> subprocess.Popen:
    """One process worker polling every second; its flows use the fake API and a tmp DuckDB."""
    return prefect_server.worker(
        poll_s=1.0,
        BTC_DB_PATH=str(worker_db),
        BTC_NOTIFY="none",
        BTC_COINGECKO_URL=f"{fake_api_server.url}/coingecko",
        BTC_COINBASE_URL=f"{fake_api_server.url}/coinbase",
        BTC_RETRY_BASE_S="0.1",
        BTC_READ_TIMEOUT_S="1",
        BTC_EXTRACT_CACHE_S="1",
    )


@pytest.fixture
def against(prefect_server, tmp_path, monkeypatch):
    """Run flows in this process against the test server, data in tmp_path."""
    monkeypatch.setenv("BTC_DB_PATH", str(tmp_path / "btc.duckdb"))
    monkeypatch.setenv("BTC_NOTIFY", "none")
    with prefect_server.in_process({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "results"}):
        yield prefect_server
