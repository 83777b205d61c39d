"""Timed runs: warm overhead of each port, cold runs of every path, the Prefect benchmarks.

Each measurement is a median, interleaved with its baseline in the same run; the bench modules
do the timing, this module runs them and keeps their numbers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import prefect_backends
from bench.prefect_backends import Server
from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT
from btc_core.store import Store
from btc_core.transform import export
from deployments.processes import run_checked
from scripts import parity

PYTHON = Path(sys.executable)
AIRFLOW_PYTHON = parity.AIRFLOW_PY
# Servers started here take the first free port from these (this script's range: 4900-4999).
PREFECT_COST_PORT = 4900
BACKENDS_PORT = 4920
COLD_PATHS = ("plain", "prefect (server running)", "prefect (no server)", "dagster", "airflow")


def bench_medians(
    python: Path, module: str, labels: dict[str, str], *args: str
) -> dict[str, float]:
    """Run a bench module and read its medians (ms) from its ``label : N ms`` output lines."""
    stdout = run_checked([str(python), "-m", module, *args], what=module)
    found = {}
    for key, label in labels.items():
        match = re.search(rf"^{re.escape(label)}\s*:\s*([\d.]+) ms", stdout, re.MULTILINE)
        if not match:
            raise RuntimeError(f"{module}: no '{label}' line in its output:\n{stdout}")
        found[key] = float(match.group(1))
    return found


def warm_overheads(repeats: int) -> dict:
    """Warm medians (ms) of ``bench.dagster_overhead`` and ``bench.airflow_overhead``."""
    runs = {
        "Dagster": (PYTHON, "bench.dagster_overhead", "Dagster materialize"),
        "Airflow": (AIRFLOW_PYTHON, "bench.airflow_overhead", "Airflow dag.test"),
    }
    results: dict = {"repeats": repeats}
    for port, (python, module, label) in runs.items():
        labels = {"plain_ms": "plain run_cycle", "run_ms": label}
        results[port] = bench_medians(python, module, labels, "--repeats", str(repeats))
    return results


def prefect_cost(repeats: int, runs: int) -> dict:
    """``bench.prefect_cost``'s numbers (warm against the floor, cold, trigger, warm path,
    imports), read from its ``--json`` file; its report is printed as it goes."""
    with tempfile.TemporaryDirectory(prefix="btc-comparison-cost-") as tmp:
        out = Path(tmp, "prefect-cost.json")
        options = ["--repeats", str(repeats), "--runs", str(runs), "--port", str(PREFECT_COST_PORT)]
        cmd = [str(PYTHON), "-m", "bench.prefect_cost", *options, "--json", str(out)]
        if subprocess.run(cmd, cwd=PROJECT_ROOT).returncode != 0:
            raise RuntimeError("bench.prefect_cost failed (its output is above)")
        return json.loads(out.read_text())


def backends_and_cold(runs: int, repeats: int, rounds: int) -> tuple[dict, dict]:
    """On a SQLite server, then on a PostgreSQL one (``bench.prefect_backends``): the 100-task
    flow and the warm pipeline; on PostgreSQL, the cold runs of every path too (the Prefect
    one pointed at that server)."""
    backends: dict = {}
    cold: dict = {}
    with tempfile.TemporaryDirectory(prefix="btc-comparison-") as tmp:
        workdir = Path(tmp)
        for backend in prefect_backends.BACKENDS:
            with prefect_backends.server(backend, workdir, port=BACKENDS_PORT) as srv:
                backends[backend] = {
                    "many_tasks": prefect_backends.many_tasks(srv, 100, runs),
                    "pipeline": prefect_backends.pipeline_warm(srv, repeats),
                }
                if backend == "postgres":
                    cold = cold_runs(workdir, rounds, srv)
    return backends, cold


def cold_command(
    name: str, replay: Path, out: Path, workdir: Path, srv: Server
) -> tuple[list[str], Path, dict[str, str]]:
    """The command, folder and environment of one cold run, as ``make parity`` runs the path."""
    path = name.split()[0]
    cmd, cwd = parity.commands(replay, out, path)[0]
    env = parity.environment(replay, out, path)
    if name == "prefect (server running)":
        env.update(PREFECT_HOME=str(srv.home), PREFECT_API_URL=srv.api_url)
    elif name == "prefect (no server)":
        env["PREFECT_HOME"] = str(workdir / "prefect-home-no-server")
    elif path == "airflow":
        cmd = [*cmd[:-1], str(workdir / "airflow-home")]  # kept: migrated in round 0
    return cmd, cwd, env


def cold_runs(workdir: Path, rounds: int, srv: Server) -> dict:
    """Seconds of one cycle in a fresh process, per path, as parity runs it (``btc run``,
    ``python flows/btc.py``, ``python -m dagster_port.parity``, ``python -m btc_airflow.parity``),
    interleaved over ``rounds`` measured rounds after one warm-up round (Prefect's and Airflow's
    metadata databases are created then, as on any machine that ran them once). Each round also
    checks that the paths' DuckDB files export byte-identical JSON."""
    times: dict[str, list[float]] = {name: [] for name in COLD_PATHS}
    identical: list[bool] = []
    days = 0
    for round_number in range(rounds + 1):
        folder = workdir / f"cold{round_number}"
        folder.mkdir(parents=True)
        replay = folder / "replay.csv"  # a fresh copy: no cache hit from an earlier round
        shutil.copyfile(DEFAULT_REPLAY_FILE, replay)
        exports = set()
        for name in COLD_PATHS:
            out = folder / re.sub(r"\W+", "-", name).strip("-")
            out.mkdir()
            cmd, cwd, env = cold_command(name, replay, out, workdir, srv)
            started = time.perf_counter()
            result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
            took = time.perf_counter() - started
            if result.returncode != 0:
                tail = (result.stdout + result.stderr)[-2000:]
                raise RuntimeError(f"cold run of {name} failed ({' '.join(cmd[:3])}):\n{tail}")
            text = export(Store(out / f"{name.split()[0]}.duckdb"))
            exports.add(text)
            days = text.count('"day"')
            if round_number:  # round 0 warms up
                times[name].append(took)
        identical.append(len(exports) == 1)
    return {"times": times, "identical": identical, "days": days}
