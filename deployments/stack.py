"""Run the self-hosted control plane and workers locally, stop them by PID.

    python -m deployments.stack up       # server on 127.0.0.1:4200 (next free port if busy),
                                         # setup, deploy --all, one process worker
    python -m deployments.stack demo     # up, then run btc-hourly and wait for Completed
    python -m deployments.stack status
    python -m deployments.stack down     # workers first (SIGINT twice), then the server

State lives in ``var/stack`` (PIDs, URL, logs); PREFECT_HOME is ``var/prefect`` so nothing touches
your own ~/.prefect. ``PREFECT_API_DATABASE_CONNECTION_URL`` switches the server to Postgres
(``postgresql+asyncpg://user@127.0.0.1:5432/prefect``); SQLite is the embedded default.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from btc_core.settings import PROJECT_ROOT

STACK_DIR = PROJECT_ROOT / "var" / "stack"
PREFECT_HOME = PROJECT_ROOT / "var" / "prefect"
DEFAULT_PORT = 4200
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    """What runs: the server's URL and PID, and the workers' PIDs."""

    url: str = ""
    server_pid: int = 0
    worker_pids: list[int] = field(default_factory=list)
    home: str = str(PREFECT_HOME)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def save(self, folder: Path = STACK_DIR) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stack.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path = STACK_DIR) -> Stack:
        path = folder / "stack.json"
        return cls(**json.loads(path.read_text())) if path.exists() else cls()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int = DEFAULT_PORT, tries: int = 50) -> int:
    """``preferred`` if free, else the next free port, saying so."""
    for port in range(preferred, preferred + tries):
        if port_is_free(port):
            if port != preferred:
                print(f"port {preferred} is busy (another Prefect server?); using {port} instead")
            return port
    raise SystemExit(f"no free port in {preferred}..{preferred + tries - 1}; stop what holds them")


def prefect_env(home: Path | str, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for Prefect processes of this stack."""
    # PYTHONDONTWRITEBYTECODE (set on some CI machines) would make every flow-run process
    # compile Prefect from source again: +1 s per run. Workers on real machines cache bytecode.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "btc_core",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    # Prefect's own settings given to us win (database URL, polling, auth, ...).
    env.update(
        {k: v for k, v in os.environ.items() if k.startswith("PREFECT_") and k != "PREFECT_HOME"}
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def wait_for_api(
    api_url: str, timeout_s: float = 120.0, proc: subprocess.Popen | None = None
) -> None:
    """Block until ``/health`` answers, or fail with the reason."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"the Prefect server exited with code {proc.returncode}; see its log"
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Prefect API at {api_url} did not answer within {timeout_s:.0f} s")


def start_server(home: Path, port: int, log: Path, **env: str) -> subprocess.Popen:
    """``prefect server start`` bound to 127.0.0.1 in the background.

    The UI is told the API's address: by default it derives it from PREFECT_SERVER_API_PORT, not
    from ``--port``, so on any port but 4200 it would call a server that is not there. A
    ``PREFECT_UI_API_URL`` of your own (a reverse proxy) wins."""
    home.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    ui = (
        {}
        if "PREFECT_UI_API_URL" in os.environ
        else {"PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    )
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=prefect_env(home, **{**ui, **env}),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=PROJECT_ROOT,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    wait_for_api(api_url, proc=proc)
    served = _served_home(api_url)
    if served is not None and Path(served).resolve() != home.resolve():
        stop(proc.pid, sigints=1)
        raise PortTaken(f"port {port} is served by another Prefect server (PREFECT_HOME {served})")
    return proc


class PortTaken(RuntimeError):
    """Another server took the port between :func:`pick_port` and our server's start (two test
    sessions on one machine): its /health answered, so without this check we would use it."""


def _served_home(api_url: str) -> str | None:
    """PREFECT_HOME of the server answering at ``api_url`` (None behind basic auth)."""
    answer = httpx.get(f"{api_url}/admin/settings", timeout=10)
    return answer.json().get("home") if answer.status_code == 200 else None


def start_worker(
    home: Path | str,
    api_url: str,
    pool: str,
    log: Path,
    poll_s: float = 10.0,
    *,
    queue: str | None = None,
    cwd: Path = PROJECT_ROOT,
    **env: str,
) -> subprocess.Popen:
    """``prefect worker start --pool`` in the background, polling every ``poll_s`` seconds
    (only ``queue`` if given), from ``cwd``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    name = f"{socket.gethostname()}-{pool}-{f'{queue}-' if queue else ''}{os.getpid()}"
    return subprocess.Popen(
        [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            pool,
            "--name",
            name,
            *(["--work-queue", queue] if queue else []),
        ],
        env=prefect_env(
            home,
            api_url,
            PREFECT_WORKER_QUERY_SECONDS=str(poll_s),
            PREFECT_WORKER_PREFETCH_SECONDS=str(max(poll_s, 1.0)),
            **env,
        ),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=cwd,
    )


def stop(pid: int, *, sigints: int = 2, grace_s: float = 15.0) -> None:
    """Stop a process group politely: SIGINT (twice for workers), then SIGTERM, then SIGKILL."""
    signals = [signal.SIGINT] * sigints + [signal.SIGTERM, signal.SIGKILL]
    for sig in signals:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s / len(signals)
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: poll for existence
                done = 0 if _alive(pid) else pid
            if done:
                return
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def prefect_cli(home: Path | str, api_url: str, *args: str, timeout_s: float = 300) -> str:
    """Run a ``prefect`` command against the stack; fail with its output."""
    result = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        env=prefect_env(home, api_url),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if result.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc"]


def postgres_available() -> bool:
    """The local PostgreSQL answers as user ``postgres`` (trust auth, as on this project's CI)."""
    try:
        return (
            subprocess.run([*PG_ADMIN, "SELECT 1"], capture_output=True, timeout=10).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def postgres_url(database: str) -> str:
    """Prefect's connection URL for a database on the local PostgreSQL."""
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new database on the local PostgreSQL, dropped (connections and all) afterwards."""
    if not postgres_available():
        raise RuntimeError("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    subprocess.run([*PG_ADMIN, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield name
    finally:
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        subprocess.run([*PG_ADMIN, drop], check=False, capture_output=True)


def setup_and_deploy(home: Path | str, api_url: str) -> None:
    """The idempotent Prefect setup, then every deployment of prefect.yaml."""
    result = subprocess.run(
        [sys.executable, "-m", "deployments.setup"],
        env=prefect_env(home, api_url),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"deployments.setup failed:\n{result.stdout}\n{result.stderr}")
    print(result.stdout, end="")
    prefect_cli(home, api_url, "deploy", "--all")


def server(port: int) -> Stack:
    """The server alone (SQLite in var/prefect unless PREFECT_API_DATABASE_CONNECTION_URL says)."""
    stack = Stack.load()
    if stack.server_pid and _alive(stack.server_pid):
        print(f"already running: {stack.url} (server PID {stack.server_pid})")
        return stack
    port = pick_port(port)
    proc = start_server(PREFECT_HOME, port, STACK_DIR / "server.log")
    stack = Stack(url=f"http://127.0.0.1:{port}", server_pid=proc.pid)
    stack.save()
    print(f"Prefect server: {stack.url} (PID {proc.pid}, log var/stack/server.log)")
    print(f"point clients at it: export PREFECT_API_URL={stack.api_url}")
    return stack


def up(port: int, poll_s: float) -> Stack:
    """Server, setup, deployments and one process worker; the state saved in var/stack."""
    stack = Stack.load()
    if stack.worker_pids and all(_alive(p) for p in [stack.server_pid, *stack.worker_pids]):
        print(f"already running: {stack.url}")
        return stack
    stack = server(port)
    setup_and_deploy(PREFECT_HOME, stack.api_url)
    worker = start_worker(
        PREFECT_HOME, stack.api_url, "btc-process", STACK_DIR / "worker.log", poll_s
    )
    stack.worker_pids.append(worker.pid)
    stack.save()
    print(f"process worker on pool btc-process (PID {worker.pid}, log var/stack/worker.log)")
    return stack


def wait_for_run(api_url: str, flow_run_id: str, timeout_s: float = 300.0) -> str:
    """Poll the API until the run is final; return its state name."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).json()
        state = run.get("state") or {}
        if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state["name"]
        time.sleep(0.5)
    raise TimeoutError(f"flow run {flow_run_id} not finished after {timeout_s:.0f} s")


def trigger(api_url: str, deployment: str, parameters: dict | None = None) -> str:
    """Create a run of ``flow/deployment`` now; return its id."""
    found = httpx.get(f"{api_url}/deployments/name/{deployment}", timeout=10)
    found.raise_for_status()
    created = httpx.post(
        f"{api_url}/deployments/{found.json()['id']}/create_flow_run",
        json={"parameters": parameters or {}},
        timeout=10,
    )
    created.raise_for_status()
    return created.json()["id"]


def demo(port: int, poll_s: float) -> int:
    """Up, run btc-hourly on replay data, wait for Completed, show the result and the URL."""
    stack = up(port, poll_s)
    run_id = trigger(stack.api_url, "btc-pipeline/btc-hourly")
    print(f"triggered btc-pipeline/btc-hourly: {stack.url}/runs/flow-run/{run_id}")
    state = wait_for_run(stack.api_url, run_id)
    print(f"flow run {run_id}: {state}")
    if state != "Completed":
        print("see var/stack/worker.log; stop everything with: make down")
        return 1
    export = subprocess.run(
        [str(BIN / "btc"), "export"], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    days = json.loads(export.stdout)
    print("latest daily averages (UTC):")
    for day in days[-5:]:
        print(f"  {day['day']}  ${day['avg_price_usd']:>10,.2f}  ({day['n_obs']} obs)")
    print(
        f"\nOpen the UI: {stack.url}  (server and worker keep running; stop them with: make down)"
    )
    return 0


def down() -> None:
    """Workers first (SIGINT twice), then the server."""
    stack = Stack.load()
    for pid in stack.worker_pids:
        stop(pid, sigints=2)
        print(f"stopped worker PID {pid}")
    if stack.server_pid:
        stop(stack.server_pid, sigints=1)
        print(f"stopped server PID {stack.server_pid}")
    Stack(home=stack.home).save()


def status() -> int:
    stack = Stack.load()
    if not stack.server_pid:
        print("not running (start with: make up)")
        return 1
    alive = "running" if _alive(stack.server_pid) else "DEAD"
    print(f"server {stack.url} PID {stack.server_pid}: {alive}")
    for pid in stack.worker_pids:
        print(f"worker PID {pid}: {'running' if _alive(pid) else 'DEAD'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["server", "up", "demo", "down", "status"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--poll",
        type=float,
        default=float(os.environ.get("BTC_WORKER_POLL_S", "2")),
        help="worker polling interval in seconds (Prefect's default is 10)",
    )
    args = parser.parse_args()
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
