"""Every long-running process the project starts stops cleanly on SIGTERM sent to the process the
user started (as ``kill PID``, a service manager or ``docker stop`` do): it and every process it
started are gone within seconds, idle or busy (the bound: :data:`GRACE_S`). (The Airflow UI:
airflow_port/tests/test_sigterm.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from btc_core.fake_api import FakeApi
from btc_core.settings import PROJECT_ROOT
from deployments.processes import prefect_env, start_server, start_worker, wait_until_ok
from deployments.runs import start_run
from infra.ports import pick_port
from tests.prefect.conftest import PortTaken
from tests.prefect.templates import seed_sqlite

pytestmark = [pytest.mark.integration, pytest.mark.alone]
# docker stop and most service managers wait 10 s before SIGKILL; on a quiet machine these stops
# take 0.2-5.3 s (printed). Beside the other xdist worker's stacks they took over 30 s, so `make test`
# runs this module alone after the parallel suite (mark "alone"). An idle worker that never stopped
# in .ci/run had inherited SIGINT ignored (a background job); tests/plugin.py now catches it again.
GRACE_S = 10.0
FIRST_PORT = 4840  # this suite's ports: 4840-4899


def stop(proc: subprocess.Popen) -> int | None:
    """SIGTERM to ``proc`` alone; once it and all its descendants are gone, its exit status (a
    negative one: killed by that signal). Fails, and kills what is left, after :data:`GRACE_S`."""
    main = psutil.Process(proc.pid)
    tree = [main, *main.children(recursive=True)]
    names = {p.pid: " ".join(p.cmdline()[:4]) for p in tree}
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    gone, alive = psutil.wait_procs(tree, timeout=GRACE_S)
    took = time.monotonic() - started
    for p in alive:
        p.kill()
    assert not alive, f"alive {GRACE_S:g} s after SIGTERM: {[names[p.pid] for p in alive]}"
    print(f"{names[proc.pid]}: {len(tree)} processes gone {took:.1f} s after SIGTERM")
    return next(p.returncode for p in gone if p.pid == proc.pid)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    home = tmp_path_factory.mktemp("sigterm") / "prefect"
    seed_sqlite(home)
    for _ in range(3):
        port = pick_port(FIRST_PORT)
        try:
            proc = start_server(home, port, home.parent / "server.log")
            break
        except PortTaken:
            continue
    yield proc, f"http://127.0.0.1:{port}/api", home
    if proc.poll() is None:
        stop(proc)


def test_the_stacks_worker_stops_on_sigterm(server, tmp_path):
    _, api_url, home = server
    worker = start_worker(home, api_url, "btc-sigterm-pool", tmp_path / "worker.log", 1.0)
    _wait_for(lambda: "started" in (tmp_path / "worker.log").read_text(), "the worker to start")
    assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-2000:]


def test_flows_serve_stops_on_sigterm_even_with_a_run_in_progress(server, replay_csv, tmp_path):
    """The run waits on an API that does not answer: the runner must not wait for it."""
    _, api_url, home = server
    with FakeApi.start(replay_csv, port=pick_port(FIRST_PORT + 20), slow_s=120) as api:
        env = prefect_env(
            home,
            api_url,
            BTC_DB_PATH=str(tmp_path / "s.duckdb"),
            BTC_NOTIFY="none",
            BTC_SOURCE="coingecko",
            BTC_COINGECKO_URL=f"{api.url}/coingecko",
            BTC_READ_TIMEOUT_S="300",
            PREFECT_RUNNER_POLL_FREQUENCY="1",
        )
        log = tmp_path / "serve.log"
        serve = subprocess.Popen(
            [sys.executable, "-m", "flows.serve"],
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deployment = f"{api_url}/deployments/name/btc-pipeline/btc-hourly"
        wait_until_ok(deployment, 120, serve, "serve's deployment")
        api.inject("coingecko", "timeout")
        start_run(api_url, "btc-pipeline/btc-hourly")
        _wait_for(lambda: api.hits("coingecko") > 0, "the run to call the API")
        assert stop(serve) == 0, log.read_text()[-2000:]


def test_the_stacks_server_stops_on_sigterm(server):
    proc, api_url, _ = server
    assert stop(proc) in (0, -signal.SIGTERM)  # the CLI leaves SIGTERM's default action
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api_url}/health", timeout=2)


def test_make_dagster_stops_on_sigterm(tmp_path):
    """A shell between make and dagster used to die alone and leave dagster running."""
    port = pick_port(FIRST_PORT + 40)
    log = tmp_path / "dagster.log"
    make = subprocess.Popen(
        ["make", "--no-print-directory", "dagster", f"DAGSTER_PORT={port}"],
        cwd=PROJECT_ROOT,
        start_new_session=True,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_until_ok(f"http://127.0.0.1:{port}/server_info", 300, make, "dagster dev")
    _wait_for(lambda: "Serving dagster-webserver" in log.read_text(), "the webserver", 60, make)
    assert len(psutil.Process(make.pid).children(recursive=True)) >= 5  # uv, dev, 3 services
    assert stop(make) == -signal.SIGTERM  # make ends by the signal it got, its children gone


def _wait_for(
    ready, what: str, timeout_s: float = 120, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc is None or proc.poll() is None, (
            f"{what}: the process exited ({proc.returncode})"
        )
        assert time.monotonic() < deadline, f"waited {timeout_s:g} s for {what}"
        time.sleep(0.5)
