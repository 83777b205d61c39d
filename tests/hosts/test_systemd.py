"""The worker as a service: workers/btc-prefect-worker@.service under a real systemd (PID 1 of a
worker host), installed as its header says, against a real server on this machine."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from btc_core.settings import PROJECT_ROOT
from tests.e2e.runs import start
from tests.hosts.conftest import (
    FIGURES,
    POOL,
    USER,
    Host,
    pause_env,
    start_host,
    strict_env,
)
from tests.prefect.conftest import Server
from tests.prefect.helpers import completed_run, wait_until

UNIT = "btc-prefect-worker@.service"
SERVICE = f"btc-prefect-worker@{POOL}.service"
CHECKOUT = "/opt/btc-orchestration"  # the unit's default WorkingDirectory (set again below)
DEPLOYMENT = "btc-pipeline/btc-hourly"
RESTART_SEC = 10  # the unit's RestartSec
TIMEOUT_STOP_SEC = 120  # the unit's TimeoutStopSec


@dataclass
class Service:
    host: Host

    def systemctl(self, *args: str, timeout_s: float = 200) -> str:
        return self.host.sh(f"systemctl {' '.join(args)}", user="root", timeout_s=timeout_s)

    def show(self, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", SERVICE).strip()

    def journal(self) -> str:
        return self.host.sh(f"journalctl -u {SERVICE} --no-pager -o cat", user="root")

    def flow_pid(self) -> str:
        """The PID of the flow-run process in flight (``python -m prefect.engine``), or ""."""
        out = self.host.sh("pgrep -u btc -f 'prefect.engine'", user="root", check=False)
        return out.split()[0] if out.split() else "none"

    def worker_pids(self) -> list[int]:
        """The Prefect worker's Python processes (children of uv, the unit's main process)."""
        out = self.host.sh("pgrep -u btc -f 'bin/python.* worker start'", user="root", check=False)
        return [int(p) for p in out.split()]

    def worker_pid(self) -> int:
        pids = self.worker_pids()
        assert len(pids) == 1, f"expected one worker process, found {pids}"
        return pids[0]

    def restarted(self, main_pid: str, what: str) -> float:
        """Seconds until the unit is active again with a main process other than ``main_pid``."""
        return wait_until(
            lambda: (
                self.show("ActiveState") == "active" and self.show("MainPID") not in ("0", main_pid)
            ),
            RESTART_SEC + 60,
            what,
        )


@pytest.fixture(scope="module")
def service(
    host_image: str,
    uv_cache: str,
    code_source: str,
    control_plane: Server,
    planted_secrets: dict[str, str],
) -> Iterator[Service]:
    """A worker host with systemd, the project cloned where the unit expects it and installed
    once, the unit and a drop-in as its header says, the secrets in /etc/btc/worker.env."""
    host = start_host(host_image, "systemd", systemd=True)
    try:
        host.sh(f"install -d -o {USER} -g {USER} {CHECKOUT}", user="root")
        host.sh(
            f"git clone -q {code_source} {CHECKOUT} && cd {CHECKOUT} "
            "&& $(python3 scripts/bootstrap_uv.py) sync --frozen -q"
        )
        # the unit of this checkout (the one under test), copied as its header says
        host.put(f"/etc/systemd/system/{UNIT}", (PROJECT_ROOT / "workers" / UNIT).read_text())
        host.put(
            f"/etc/systemd/system/{SERVICE}.d/override.conf",
            "[Service]\n"
            f"WorkingDirectory={CHECKOUT}\n"
            f"Environment=PREFECT_API_URL={control_plane.api_url}\n"
            "Environment=BTC_WORKER_POLL_S=1\n"
            # This workplace's TLS-intercepting proxy (tests/hosts/Dockerfile): uv reads the
            # system bundle only when told so. Not needed on a normal network.
            "Environment=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n",
        )
        env = strict_env(planted_secrets)
        host.put("/etc/btc/worker.env", "".join(f"{k}={v}\n" for k, v in env.items()), "600")
        svc = Service(host)
        svc.systemctl("daemon-reload")
        yield svc
    finally:
        host.remove()


def test_systemd_worker_restarted_after_kill_9(
    service: Service, control_plane: Server, figure: Callable[[str], None]
) -> None:
    """``systemctl start``: a run Completed; ``kill -9`` of the worker process: systemd counts
    it a failure (Restart=on-failure) and starts it again after RestartSec; the next run
    Completed."""
    if "image" in FIGURES:
        figure(FIGURES["image"])
    with control_plane.client() as client:
        started = time.monotonic()
        service.systemctl("start", SERVICE)
        completed_run(client, DEPLOYMENT, timeout_s=240)
        figure(f"systemctl start -> first run Completed {time.monotonic() - started:.1f} s")

        restarts = int(service.show("NRestarts"))
        main_pid, worker_pid = service.show("MainPID"), service.worker_pid()
        killed = time.monotonic()
        service.host.sh(f"kill -9 {worker_pid}", user="root")
        back = service.restarted(main_pid, "systemd restarting the worker")
        assert int(service.show("NRestarts")) == restarts + 1
        journal = service.journal()
        exits = [line for line in journal.splitlines() if "Main process exited" in line]
        assert exits and "Scheduled restart job" in journal, journal[-3000:]
        completed_run(client, DEPLOYMENT, timeout_s=240)
        worker_pid = service.worker_pid()

        # the main process itself (uv): a death by SIGKILL counts too, and the worker it leaves
        # behind goes with it (KillMode=mixed), so that one worker polls, not two
        main_pid = service.show("MainPID")
        service.host.sh(f"kill -9 {main_pid}", user="root")
        again = service.restarted(
            main_pid, "systemd restarting the worker after its main process was killed"
        )
        assert int(service.show("NRestarts")) == restarts + 2
        assert "code=killed, status=9/KILL" in service.journal()
        wait_until(
            lambda: len(pids := service.worker_pids()) == 1 and pids[0] != worker_pid,
            60,
            "one worker process, a new one",
        )
        figure(
            f"kill -9 of the worker ({exits[-1].split(': ', 1)[-1]}): running again after "
            f"{back:.1f} s (RestartSec={RESTART_SEC}), next run Completed "
            f"{time.monotonic() - killed:.1f} s after the kill; kill -9 of uv (the main "
            f"process): running again after {again:.1f} s"
        )


def test_systemd_stop_with_run_in_flight(
    service: Service, control_plane: Server, figure: Callable[[str], None]
) -> None:
    """A run pausing 10 s inside its load; ``systemctl stop`` while it pauses: the service stops
    within TimeoutStopSec and the run is final at once, never left Running. Crashed, plainly:
    Prefect 3.9's worker cannot drain (stopped, it SIGKILLs its flow-run processes), so the
    unit's ExecStop (workers/stop-worker.sh) SIGTERMs them first and their engine reports."""
    service.systemctl("start", SERVICE)
    with control_plane.client() as client:
        completed_run(client, DEPLOYMENT, timeout_s=240)  # the worker is polling
        flow_run = start(client, DEPLOYMENT, {"env": pause_env(CHECKOUT, 10)})
        wait_until(
            lambda: f"PID {service.flow_pid()} pausing" in service.journal(),
            120,
            "the run pausing inside its load",
        )
        stopping = time.monotonic()
        service.systemctl("stop", SERVICE, timeout_s=TIMEOUT_STOP_SEC + 30)
        stopped = time.monotonic() - stopping
        assert service.show("ActiveState") == "inactive", service.show("ActiveState")
        assert stopped < TIMEOUT_STOP_SEC, f"systemctl stop took {stopped:.0f} s"
        state = client.read_flow_run(flow_run.id).state
        after = 0.0
        while state is not None and not state.is_final() and after < 15:
            time.sleep(0.5)
            after += 0.5
            state = client.read_flow_run(flow_run.id).state
        figure(
            f"systemctl stop with a run in flight: stopped in {stopped:.1f} s, the run "
            f"{state.name if state else '?'} {after:.1f} s later"
        )
        assert state is not None and state.is_final(), (
            f"systemctl stop left the run {state.name if state else '?'}"
        )
        assert state.name in ("Completed", "Cancelled", "Crashed"), state


def test_systemd_journal_holds_the_log_and_no_secret(
    service: Service,
    control_plane: Server,
    planted_secrets: dict[str, str],
    figure: Callable[[str], None],
) -> None:
    """``journalctl -u`` has the worker's log and its runs' output, and none of the secrets
    planted in /etc/btc/worker.env (which the worker and its runs hold in their environment)."""
    journal = service.journal()
    if "submitting flow run" not in journal:  # run alone: no run yet
        service.systemctl("start", SERVICE)
        with control_plane.client() as client:
            completed_run(client, DEPLOYMENT, timeout_s=240)
        journal = service.journal()
    assert f"Worker 'host-systemd-{POOL}' started" in journal, journal[-2000:]
    assert "submitting flow run" in journal, journal[-2000:]
    assert re.search(r"Task run 'load-\w+' - loaded 2208", journal), journal[-2000:]
    leaked = [name for name, value in planted_secrets.items() if value in journal]
    assert not leaked, f"secrets in the journal: {leaked}"
    figure(f"journal: {len(journal.splitlines())} lines, the worker's and its runs', no secret")
