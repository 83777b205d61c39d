"""Worker hosts that share nothing but the API: two containers, each set up only as a worker host
is (a git clone of the project, then ``workers/start-process-worker.sh btc-process`` with
PREFECT_API_URL), run the process pool's deployments of a control plane on this machine. Every
run clones the deployed commit from the code source (the ``git_clone`` pull step); each host's
DuckDB file and secrets stay on it; in strict mode no price reaches the server's database. When
one host dies mid-run, the zombie automation marks its run Crashed and the other host takes the
next runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from prefect.client.schemas.objects import FlowRun

from btc_core.settings import DEFAULT_REPLAY_FILE
from tests.e2e.boundary import close_prices, daily_averages, forbidden, leaks, sqlite_text
from tests.e2e.hosts import export_of, plain_cycle_export
from tests.e2e.runs import settle, start
from tests.hosts.conftest import (
    FIGURES,
    HEARTBEAT_S,
    HOME,
    POOL,
    USER,
    ZOMBIE_AFTER_S,
    Host,
    docker,
    pause_env,
    start_host,
    strict_env,
)
from tests.prefect.conftest import Server
from tests.prefect.helpers import wait, wait_until

DEPLOYMENT = "btc-pipeline/btc-hourly"
CHECKOUT = f"{HOME}/btc-orchestration"
# The data's default place: var/ of the checkout the worker's environment was installed from
# (btc_core.settings.DATA_ROOT), not the temporary folder each run's pull step clones into.
DATA = f"{CHECKOUT}/var"
DB = f"{DATA}/btc.duckdb"
WORKER_LOG = f"{HOME}/worker.log"
ROWS = 2208  # observations of the replay file


class WorkerHost:
    """A worker host with its clone and its worker (started by the documented script)."""

    def __init__(self, host: Host) -> None:
        self.host = host

    @property
    def name(self) -> str:
        return self.host.hostname

    def start_worker(self, api_url: str, env: dict[str, str]) -> None:
        """``workers/start-process-worker.sh btc-process`` in the background, as a user starts
        it over ssh with nohup; its console goes to ~/worker.log."""
        flags = [f"--env={k}={v}" for k, v in {**env, "PREFECT_API_URL": api_url}.items()]
        docker(
            "exec", "-d", "-u", USER, "-w", CHECKOUT, *flags, self.host.container,
            "sh", "-c", f"exec workers/start-process-worker.sh {POOL} >>{WORKER_LOG} 2>&1",
        )  # fmt: skip

    def log(self) -> str:
        return self.host.sh(f"cat {WORKER_LOG}", check=False)

    def took(self, flow_run: FlowRun) -> bool:
        """Whether this host's worker started the run: it won the run's Pending state (two
        workers may both be "submitting flow run" one run; only one process is started)."""
        return f"Flow run '{flow_run.name}' submitted to infrastructure" in self.log()

    def db_copy(self, dest: Path) -> Path:
        """The host's DuckDB file (with its WAL, if any), copied out of the host's data folder
        (``docker cp`` also reads a dead host's)."""
        target = dest / self.name
        docker("cp", f"{self.host.container}:{DATA}", str(target), check=False)
        return target / Path(DB).name


def counts(db: Path) -> tuple[int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture(scope="module")
def plain_export(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same cycle with no orchestrator: what each host's DuckDB must hold."""
    return plain_cycle_export(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def worker_hosts(
    host_image: str,
    uv_cache: str,
    code_source: str,
    control_plane: Server,
    planted_secrets: dict[str, str],
) -> Iterator[tuple[WorkerHost, WorkerHost]]:
    """Hosts a and b, set up side by side: clone, then the worker script (which installs uv
    and the locked environment on its first start), polling every second; both online."""
    hosts: list[WorkerHost] = []
    errors: list[BaseException] = []
    env = {
        **strict_env(planted_secrets),
        "BTC_WORKER_POLL_S": "1",
    }

    def set_up(role: str) -> None:
        try:
            host = WorkerHost(start_host(host_image, role))
            hosts.append(host)
            host.host.clone(code_source)
            host.start_worker(control_plane.api_url, env)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=set_up, args=(role,)) for role in ("a", "b")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        names = {f"{h.name}-{POOL}" for h in hosts}
        with control_plane.client() as client:
            wait_until(
                lambda: (
                    names
                    <= {
                        w.name
                        for w in client.read_workers_for_work_pool(POOL)
                        if w.status and w.status.value == "ONLINE"
                    }
                ),
                240,
                "both workers online",
            )
        hosts.sort(key=lambda h: h.name)
        yield hosts[0], hosts[1]
    finally:
        for host in hosts:
            host.host.remove()


def run_on(client, target: WorkerHost, other: WorkerHost, job_env: dict[str, str] | None = None):
    """A run that lands on ``target``: ``other`` is paused (frozen by ``docker pause``) until
    ``target``'s worker has taken it."""
    for attempt in range(10):  # cgroup v1's freezer gives up on a busy process: "unable to freeze"
        try:
            docker("pause", other.host.container)
            break
        except RuntimeError:
            if attempt == 9:
                raise
            time.sleep(0.5)
    try:
        flow_run = start(client, DEPLOYMENT, {"env": job_env} if job_env else None)
        wait_until(lambda: target.took(flow_run), 90, f"{target.name} taking the run")
    finally:
        docker("unpause", other.host.container)
    return flow_run


def test_worker_host_runs_complete_on_both_hosts_and_their_data_stays_there(
    worker_hosts: tuple[WorkerHost, WorkerHost],
    control_plane: Server,
    planted_secrets: dict[str, str],
    plain_export: str,
    tmp_path: Path,
    figure: Callable[[str], None],
) -> None:
    """One run of btc-hourly on each host: both Completed, each host's DuckDB holds the plain
    pipeline's output, and the server's database holds no price and no secret."""
    if "image" in FIGURES:
        figure(FIGURES["image"])
    a, b = worker_hosts
    with control_plane.client() as client:
        for target, other in ((a, b), (b, a)):
            started = time.monotonic()
            flow_run = run_on(client, target, other)
            final = wait(client, flow_run.id, timeout_s=180)
            assert final.state is not None and final.state.name == "Completed", final.state
            settle(client, final)
            figure(f"{target.name}: trigger -> Completed {time.monotonic() - started:.1f} s")
    prices = close_prices(DEFAULT_REPLAY_FILE)
    for host in (a, b):
        db = host.db_copy(tmp_path)
        assert counts(db) == (ROWS, ROWS)
        assert export_of(db) == plain_export
        prices += daily_averages(db)
    found = leaks(sqlite_text(control_plane.home), forbidden(prices, planted_secrets))
    assert not found, f"on the control plane: {found}"


def test_worker_host_killed_mid_run_is_crashed_and_the_other_host_takes_the_next_runs(
    worker_hosts: tuple[WorkerHost, WorkerHost],
    control_plane: Server,
    plain_export: str,
    tmp_path: Path,
    figure: Callable[[str], None],
) -> None:
    """Host a dies (``docker kill``) while its run pauses inside the load transaction: the run
    is marked Crashed by the zombie automation (no heartbeat for ZOMBIE_AFTER_S), the next runs
    complete on host b, and neither DuckDB lost or doubled a row."""
    a, b = worker_hosts
    with control_plane.client() as client:
        doomed = run_on(client, a, b, pause_env(CHECKOUT, 600))
        wait_until(lambda: "test hook: PID" in a.log(), 120, "the run pausing inside its load")
        state = client.read_flow_run(doomed.id).state
        assert state is not None and state.name == "Running", state
        docker("kill", a.host.container)
        killed = time.monotonic()
        next_runs = [start(client, DEPLOYMENT) for _ in range(2)]
        for flow_run in next_runs:
            final = wait(client, flow_run.id, timeout_s=180)
            assert final.state is not None and final.state.name == "Completed", final.state
            assert b.took(flow_run), f"run {flow_run.id} not on {b.name}"
        crashed = wait(client, doomed.id, timeout_s=ZOMBIE_AFTER_S + HEARTBEAT_S + 60)
        crash_s = time.monotonic() - killed
        assert crashed.state is not None and crashed.state.name == "Crashed", crashed.state
        assert "heartbeat" in (crashed.state.message or ""), crashed.state.message
        runs = client.read_flow_runs()
        assert not [r.id for r in runs if r.state and r.state.name in ("Running", "Pending")]
    figure(
        f"host killed mid-run: Crashed {crash_s:.0f} s after the kill (heartbeat {HEARTBEAT_S} s,"
        f" zombie after {ZOMBIE_AFTER_S} s); the next 2 runs Completed on {b.name}"
    )
    # a's load died inside its transaction: a's file holds its earlier runs, complete, or nothing
    for host in (a, b):
        db = host.db_copy(tmp_path)
        if host is a and not db.exists():
            continue
        assert counts(db) == (ROWS, ROWS), host.name
        assert export_of(db) == plain_export, host.name
