"""The project's background processes, started and stopped by PID: ``prefect server``, workers,
the warm path (``flows.warm``), each with the environment of :func:`prefect_env`.

Used by ``make up`` (deployments/stack.py), the HA and hybrid stacks, the benchmarks and the tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from btc_core.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


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
        time.sleep(0.1)  # a refused connection costs nothing; a server up is seen at once
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
    bin_dir: Path = BIN,
    **env: str,
) -> subprocess.Popen:
    """``prefect worker start --pool`` in the background, polling every ``poll_s`` seconds
    (only ``queue`` if given), from ``cwd``, with the environment of ``bin_dir`` (first on its
    PATH: the ``python`` of its process flow runs)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    name = f"{socket.gethostname()}-{pool}-{f'{queue}-' if queue else ''}{os.getpid()}"
    path = f"{bin_dir}{os.pathsep}{env.pop('PATH', os.environ.get('PATH', ''))}"
    return subprocess.Popen(
        [
            str(bin_dir / "prefect"),
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
            PATH=path,
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
    """Stop a process group politely: SIGINT (``sigints`` times), then SIGTERM, then SIGKILL,
    each after a share of ``grace_s``. A Prefect worker answers any signal after its first with
    a SIGKILL of its own: stop workers with :func:`stop_worker`."""
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
                done = 0 if alive(pid) else pid
            if done:
                return
            time.sleep(0.1)


def alive(pid: int) -> bool:
    """The process runs: an exited one its parent has not reaped (a zombie) does not. Processes
    of the stack outlive ``make up``, and where their new parent does not reap (PID 1 of a
    container that is no init), a stop would otherwise wait out every signal's grace: `make
    down` took 32-35 s on the fresh-machine containers."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's, alive
        return True


def stop_worker(pid: int, grace_s: float = 15.0) -> None:
    """Stop a ``prefect worker start`` process without leaving its runs Running.

    Prefect 3.9's worker, when SIGINT or SIGTERM stops it, SIGKILLs the flow-run processes it
    started (cancelling its task group closes their asyncio transports), so they never report,
    and a second signal makes it SIGKILL itself. So each flow-run process gets SIGTERM first: the
    flow engine then marks its run Crashed ("Execution was aborted by a termination signal")
    and exits; then the worker gets one SIGINT (see :func:`stop`)."""
    try:
        runs = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return
    for run in runs:
        with contextlib.suppress(psutil.NoSuchProcess):
            run.terminate()
    psutil.wait_procs(runs, timeout=grace_s)
    stop(pid, sigints=1, grace_s=grace_s)


def identify(pid: int) -> dict[str, object] | None:
    """What tells a live process from a later one with the same PID (PIDs wrap): its start time
    and command line. None if no such process is alive."""
    try:
        proc = psutil.Process(pid)
        return {"started": proc.create_time(), "cmdline": proc.cmdline()}
    except psutil.Error:  # gone, a zombie, or not ours to read
        return None


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
