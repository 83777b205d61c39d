"""The Airflow UI processes (``make ui``: api-server, scheduler, dag-processor) each stop on
SIGTERM, with every process they started, within 10 s."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
from btc_airflow import env

SERVICES = ("dag-processor", "scheduler", "api-server")
GRACE_S = 10.0


def free_port(first: int = 4860) -> int:
    for port in range(first, first + 20):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {first}..{first + 19}")


def test_each_ui_process_stops_on_sigterm(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # the suite's AIRFLOW_HOME (conftest.py), migrated by `make test`
    home = os.environ["AIRFLOW_HOME"]
    ui = {**os.environ, "AIRFLOW_UI_RUN_DIR": str(run_dir), "AIRFLOW_UI_HOME": home}
    script = env.PORT_DIR / "scripts" / "ui.sh"
    up = subprocess.run(
        [str(script), "up", str(free_port())],
        cwd=env.PORT_DIR,
        env=ui,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        for service in SERVICES:
            main = psutil.Process(int((run_dir / f"{service}.pid").read_text()))
            tree = [main, *main.children(recursive=True)]
            started = time.monotonic()
            main.send_signal(signal.SIGTERM)
            _, alive = psutil.wait_procs(tree, timeout=GRACE_S)
            for process in alive:
                process.kill()
            assert not alive, f"{service}: {len(alive)} processes alive {GRACE_S:g} s after SIGTERM"
            print(
                f"{service}: {len(tree)} processes gone {time.monotonic() - started:.1f} s after SIGTERM"
            )
    finally:
        subprocess.run([str(script), "down"], cwd=env.PORT_DIR, env=ui, capture_output=True)
