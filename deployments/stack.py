"""Run the self-hosted control plane and workers locally, stop them by PID.

    python -m deployments.stack up       # server on 127.0.0.1:4200 (next free port if busy),
                                         # setup, deploy --all, one process worker
    python -m deployments.stack demo     # up, then run btc-hourly and wait for Completed
    python -m deployments.stack status
    python -m deployments.stack down     # workers first (their runs end Crashed), then the server

State lives in ``var/stack`` (PIDs with their start time and command line, URL, logs); PREFECT_HOME is ``var/prefect`` so nothing touches
your own ~/.prefect. ``PREFECT_API_DATABASE_CONNECTION_URL`` switches the server to Postgres
(``postgresql+asyncpg://user@127.0.0.1:5432/prefect``); SQLite is the embedded default.

While the server runs, ``.env`` in the project folder holds its ``PREFECT_API_URL``: Prefect reads
that file from the working directory, so ``uv run prefect ...`` and ``uv run btc doctor`` in any
new shell started here talk to this server with nothing exported. ``down`` removes the line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from btc_core.files import write_atomically
from btc_core.settings import PROJECT_ROOT
from deployments.deploy import deployment_names, setup_and_deploy
from deployments.names import DOCKER_POOL
from deployments.processes import BIN, identify, start_server, start_worker, stop, stop_worker
from deployments.runs import run_now
from deployments.worker_env import WORKER_VENV
from deployments.worker_env import sync as sync_worker_env
from infra.ports import DEFAULT_PORT, pick_port
from infra.signals import sigint_not_ignored

STACK_DIR = PROJECT_ROOT / "var" / "stack"
PREFECT_HOME = PROJECT_ROOT / "var" / "prefect"
# How often the stack's worker asks for runs (Prefect's default is 10 s): a run waits half of it on
# average; each poll costs the server ~18 ms of CPU (docs/prefect-cost.md prices each setting).
# BTC_WORKER_POLL_S overrides it.
DEFAULT_POLL_S = 0.5


@dataclass
class Stack:
    """What runs: the server's URL and PID, the workers' PIDs, and what identifies each of those
    processes (:func:`identify`, by PID as a string), recorded when it is saved."""

    url: str = ""
    server_pid: int = 0
    worker_pids: list[int] = field(default_factory=list)
    home: str = str(PREFECT_HOME)
    identities: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def ours(self, pid: int) -> bool:
        """``pid`` is alive and still the process the stack started: same start time and command
        line as recorded (a PID recorded before identities were, by an older stack.json, is
        taken on trust)."""
        now = identify(pid)
        recorded = self.identities.get(str(pid))
        return now is not None and (recorded is None or recorded == now)

    def running(self) -> bool:
        """The recorded server process is alive (and still ours)."""
        return bool(self.server_pid) and self.ours(self.server_pid)

    def save(self, folder: Path = STACK_DIR) -> None:
        """Write stack.json, with the identity of each recorded process not yet identified (it
        was just started)."""
        pids = [str(pid) for pid in [self.server_pid, *self.worker_pids] if pid]
        for pid in pids:
            if pid not in self.identities and (found := identify(int(pid))):
                self.identities[pid] = found
        self.identities = {pid: self.identities[pid] for pid in pids if pid in self.identities}
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / "stack.json", json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, folder: Path = STACK_DIR) -> Stack:
        path = folder / "stack.json"
        return cls(**json.loads(path.read_text())) if path.exists() else cls()


CLIENT_ENV = PROJECT_ROOT / ".env"
ENV_MARK = "# written by `make up` (deployments/stack.py); `make down` removes it"


def point_clients_at(api_url: str | None, path: Path = CLIENT_ENV) -> None:
    """Put ``PREFECT_API_URL=api_url`` in the project's ``.env`` (or take it out when None),
    keeping every other line of the file."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [x for x in lines if x != ENV_MARK and not x.startswith("PREFECT_API_URL=")]
    if api_url:
        kept += [ENV_MARK, f"PREFECT_API_URL={api_url}"]
    if kept:
        write_atomically(path, ("\n".join(kept) + "\n").encode())
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Place:
    """Where a stack keeps its state and its clients' ``.env`` (a test's stack: a folder of its
    own)."""

    stack_dir: Path = STACK_DIR
    home: Path = PREFECT_HOME
    env_file: Path = CLIENT_ENV


HERE = Place()


def server(port: int, place: Place = HERE) -> Stack:
    """The server alone (SQLite in var/prefect unless PREFECT_API_DATABASE_CONNECTION_URL says).
    Workers already recorded stay recorded (``down`` stops them); if the server comes back on
    another URL, they are stopped instead: they would poll the old one."""
    stack = Stack.load(place.stack_dir)
    if stack.running():
        print(f"already running: {stack.url} (server PID {stack.server_pid})")
        return stack
    port = pick_port(port)
    proc = start_server(place.home, port, place.stack_dir / "server.log")
    url = f"http://127.0.0.1:{port}"
    workers = [pid for pid in stack.worker_pids if stack.ours(pid)]
    if stack.url != url:
        for pid in workers:
            stop_worker(pid)
            print(f"stopped worker PID {pid}: it polled {stack.url}, the server is now at {url}")
        workers = []
    stack = replace(stack, url=url, server_pid=proc.pid, worker_pids=workers, home=str(place.home))
    stack.identities.pop(str(proc.pid), None)  # a dead server's PID may be reused
    stack.save(place.stack_dir)
    point_clients_at(stack.api_url, place.env_file)
    print(f"server   {stack.url} (PID {proc.pid}, SQLite in var/prefect, log var/stack/server.log)")
    print(f"         .env: PREFECT_API_URL={stack.api_url} (Prefect commands run here use it)")
    return stack


def settle(stack: Stack) -> Stack:
    """The recorded state made true: dead workers dropped, and live workers of a dead server
    stopped (they would poll a URL that is gone, and no ``make down`` would know them)."""
    live = [pid for pid in stack.worker_pids if stack.ours(pid)]
    if live and not stack.running():
        for pid in live:
            stop_worker(pid)
            print(f"stopped worker PID {pid}: its server {stack.url} is gone")
        live = []
    return replace(stack, worker_pids=live)


def up(port: int, poll_s: float, docker: bool = False) -> Stack:
    """Server, setup, deployments and one process worker; the state saved in var/stack. The
    Docker pool and its deployment only with ``docker`` (make hybrid starts its worker)."""
    stack = settle(Stack.load())
    if stack.worker_pids and stack.running():
        print(f"already running: {stack.url}")
        return stack
    stack.save()
    stack = server(port)
    setup_and_deploy(PREFECT_HOME, stack.api_url, docker=docker)
    print("setup    work pools, Secret blocks, writer limit, automations (deployments/setup.py)")
    print(f"deploy   {', '.join(deployment_names('' if docker else DOCKER_POOL))} (prefect.yaml)")
    worker = start_worker(
        PREFECT_HOME,
        stack.api_url,
        "btc-process",
        STACK_DIR / "worker.log",
        poll_s,
        bin_dir=sync_worker_env(),
        # Its flow runs write the bytecode of what they import into var/worker-venv, once:
        # compiling the whole environment ahead (uv --compile-bytecode) took ~27 s of the first
        # `make demo` on 2 cores, and without bytecode each run would compile its imports anew.
        PYTHONDONTWRITEBYTECODE="",
    )
    stack.worker_pids.append(worker.pid)
    stack.save()
    print(
        f"worker   pool btc-process, polls every {poll_s:g} s "
        f"(PID {worker.pid}, log var/stack/worker.log, its own environment "
        f"{WORKER_VENV.relative_to(PROJECT_ROOT)}: deployments/worker_env.py)"
    )
    return stack


NEXT = """\
Open the UI: {url}   (the server and the worker keep running; stop them with: make down)
Try next, from this folder, in any shell:
  uv run prefect event emit btc.replay.updated --resource-id btc.replay.demo   # runs btc-on-event
  uv run prefect deployment run btc-backfill/btc-backfill -p start=2023-11-01 -p end=2023-11-30
  uv run btc doctor                                      # checks the setup, one fix per problem
  make hybrid                                            # the same run on a Docker worker"""


def demo(port: int, poll_s: float) -> int:
    """Up (no Docker pool), run btc-hourly on replay data, show the result and the URL."""
    print("btc demo: a Prefect server, a process worker and one btc-hourly run on recorded prices")
    stack = up(port, poll_s, docker=False)
    started = time.perf_counter()
    run = run_now(stack.api_url, "btc-pipeline/btc-hourly")
    state = run.state.name if run.state else "unknown"
    took = time.perf_counter() - started
    print(f"run      btc-pipeline/btc-hourly: {state} in {took:.1f} s")
    print(f"         {stack.url}/runs/flow-run/{run.id}")
    if state != "Completed":
        print("see var/stack/worker.log; stop everything with: make down")
        return 1
    export = subprocess.run(
        [str(BIN / "btc"), "export"], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    print("latest daily averages (UTC):")
    for day in json.loads(export.stdout)[-5:]:
        print(f"  {day['day']}  ${day['avg_price_usd']:>10,.2f}  ({day['n_obs']} observations)")
    print(NEXT.format(url=stack.url))
    return 0


def down(place: Place = HERE) -> None:
    """Workers first (:func:`stop_worker`: their runs end Crashed, not Running), then the server;
    only processes that are still the ones the stack started."""
    stack = Stack.load(place.stack_dir)
    if not stack.server_pid and not stack.worker_pids:
        print("nothing to stop: no server or worker recorded in var/stack")
    for pid in stack.worker_pids:
        if stack.ours(pid):
            stop_worker(pid)
            print(f"stopped worker PID {pid}")
        else:
            print(f"worker PID {pid} had already stopped (not signalled)")
    if stack.server_pid and stack.running():
        stop(stack.server_pid, sigints=1)
        print(f"stopped server PID {stack.server_pid} ({stack.url})")
    elif stack.server_pid:
        print(f"server PID {stack.server_pid} had already stopped (not signalled)")
    Stack(home=stack.home).save(place.stack_dir)
    point_clients_at(None, place.env_file)


def status() -> int:
    stack = Stack.load()
    if not stack.server_pid:
        print("not running (start with: make up)")
        return 1
    state = "running" if stack.running() else "DEAD"
    print(f"server {stack.url} PID {stack.server_pid}: {state}")
    for pid in stack.worker_pids:
        print(f"worker PID {pid}: {'running' if stack.ours(pid) else 'DEAD'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["server", "up", "demo", "down", "status"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--poll",
        type=float,
        default=float(os.environ.get("BTC_WORKER_POLL_S", DEFAULT_POLL_S)),
        help="worker polling interval in seconds (Prefect's default is 10)",
    )
    args = parser.parse_args()
    sigint_not_ignored()  # so that `kill` stops the workers started here, even from `make up &`
    if args.command == "server":
        server(args.port)
        return 0
    if args.command == "up":
        up(args.port, args.poll)
        return 0
    if args.command == "demo":
        return demo(args.port, args.poll)
    if args.command == "down":
        down()
        return 0
    return status()


if __name__ == "__main__":
    raise SystemExit(main())
