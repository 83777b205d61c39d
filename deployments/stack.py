"""Run the self-hosted control plane and workers locally, stop them by PID.

    python -m deployments.stack up       # server on 127.0.0.1:4200 (next free port if busy),
                                         # setup, deploy --all, one process worker
    python -m deployments.stack demo     # up, then run btc-hourly and wait for Completed
    python -m deployments.stack status
    python -m deployments.stack down     # workers first (SIGINT twice), then the server

State lives in ``var/stack`` (PIDs, URL, logs); PREFECT_HOME is ``var/prefect`` so nothing touches
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
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx
import yaml

from btc_core.settings import PROJECT_ROOT
from deployments.names import DOCKER_POOL
from deployments.runs import run_now
from infra.ports import DEFAULT_PORT, pick_port
from infra.signals import sigint_not_ignored

STACK_DIR = PROJECT_ROOT / "var" / "stack"
PREFECT_HOME = PROJECT_ROOT / "var" / "prefect"
# How often the stack's worker asks for runs (Prefect's default is 10 s); docs/latency.md prices
# each setting. BTC_WORKER_POLL_S overrides it.
DEFAULT_POLL_S = 1.0
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

    def running(self) -> bool:
        """The recorded server process is alive."""
        return bool(self.server_pid) and _alive(self.server_pid)

    def save(self, folder: Path = STACK_DIR) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stack.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path = STACK_DIR) -> Stack:
        path = folder / "stack.json"
        return cls(**json.loads(path.read_text())) if path.exists() else cls()


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


def wait_until_ok(
    url: str,
    timeout_s: float = 60.0,
    proc: subprocess.Popen | None = None,
    what: str = "",
    log: Path | None = None,
) -> None:
    """Block until ``url`` answers 200, or fail with the reason (``proc``: the process that
    serves it, whose exit ends the wait at once; ``what``: its name in the error; ``log``: its
    log, whose last lines the error quotes)."""
    what = what or url
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}{log_tail(log)}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer within {timeout_s:.0f} s{log_tail(log)}")


def log_tail(log: Path | None, lines: int = 30) -> str:
    """The last lines of ``log`` after a heading, for an error message (without a log: a hint)."""
    if log is None:
        return "; see its log"
    text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
    return f"; {log}:\n" + "\n".join(text)


def wait_for_api(
    api_url: str, timeout_s: float = 120.0, proc: subprocess.Popen | None = None
) -> None:
    """Block until the Prefect API's ``/health`` answers, or fail with the reason."""
    wait_until_ok(f"{api_url}/health", timeout_s, proc, what=f"the Prefect server at {api_url}")


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


def start_warm_path(env: dict[str, str], log: Path, timeout_s: float = 120) -> subprocess.Popen:
    """``python -m flows.warm`` in the background, returned once it serves and listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.warm"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout_s
    while "warm: serving btc-refresh" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc.pid, sigints=1)
            raise RuntimeError(f"flows.warm did not start{log_tail(log)}")
        time.sleep(0.2)
    time.sleep(1)  # its websocket subscriptions open just after the line
    return proc


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


def run_checked(
    args: list[str],
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
    what: str = "",
) -> str:
    """Run a command in the project folder, its output captured; return its stdout, or raise
    RuntimeError with ``what`` (default: its first three words) and the end of its output."""
    result = subprocess.run(
        args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout_s
    )
    if result.returncode != 0:
        what = what or " ".join(args[:3])
        raise RuntimeError(f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def prefect_cli(home: Path | str, api_url: str, *args: str, timeout_s: float = 300) -> str:
    """Run a ``prefect`` command against the stack; fail with its output."""
    return run_checked(
        [str(BIN / "prefect"), "--no-prompt", *args],
        prefect_env(home, api_url),
        timeout_s,
        what=f"prefect {' '.join(args)}",
    )


def setup_and_deploy(home: Path | str, api_url: str, docker: bool = True) -> str:
    """The idempotent Prefect setup, then the deployments of prefect.yaml whose pool it made
    (without ``docker``: not the Docker pool, nor its deployment). Returns setup's summary."""
    summary = run_checked(
        [sys.executable, "-m", "deployments.setup", *([] if docker else ["--no-docker-pool"])],
        prefect_env(home, api_url),
        timeout_s=300,
        what="deployments.setup",
    )
    if docker:
        prefect_cli(home, api_url, "deploy", "--all")
    else:
        names = [f"--name={name}" for name in deployment_names(exclude_pool=DOCKER_POOL)]
        prefect_cli(home, api_url, "deploy", *names)
    return summary


def deployment_names(exclude_pool: str = "") -> list[str]:
    """The deployments of prefect.yaml, but those of ``exclude_pool``."""
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    return [d["name"] for d in config["deployments"] if d["work_pool"]["name"] != exclude_pool]


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
        path.write_text("\n".join(kept) + "\n")
    else:
        path.unlink(missing_ok=True)


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
    point_clients_at(stack.api_url)
    print(f"server   {stack.url} (PID {proc.pid}, SQLite in var/prefect, log var/stack/server.log)")
    print(f"         .env: PREFECT_API_URL={stack.api_url} (Prefect commands run here use it)")
    return stack


def settle(stack: Stack) -> Stack:
    """The recorded state made true: dead workers dropped, and live workers of a dead server
    stopped (they would poll a URL that is gone, and no ``make down`` would know them)."""
    live = [pid for pid in stack.worker_pids if _alive(pid)]
    if live and not stack.running():
        for pid in live:
            stop(pid, sigints=2)
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
        PREFECT_HOME, stack.api_url, "btc-process", STACK_DIR / "worker.log", poll_s
    )
    stack.worker_pids.append(worker.pid)
    stack.save()
    print(
        f"worker   pool btc-process, polls every {poll_s:g} s "
        f"(PID {worker.pid}, log var/stack/worker.log)"
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


def down() -> None:
    """Workers first (SIGINT twice), then the server."""
    stack = Stack.load()
    if not stack.server_pid and not stack.worker_pids:
        print("nothing to stop: no server or worker recorded in var/stack")
    for pid in stack.worker_pids:
        stop(pid, sigints=2)
        print(f"stopped worker PID {pid}")
    if stack.server_pid:
        stop(stack.server_pid, sigints=1)
        print(f"stopped server PID {stack.server_pid} ({stack.url})")
    Stack(home=stack.home).save()
    point_clients_at(None)


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
