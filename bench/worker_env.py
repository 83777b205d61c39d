"""The process worker on its own environment (``var/worker-venv``, what ``make up`` starts)
against the same worker on the main environment as ``make setup``, ``make dagster`` and ``make
hybrid`` leave it (every group), in one run on one server.

    uv run python -m bench.worker_env [--runs 7] [--port 4470]
    uv run python -m bench.worker_env --stack [--runs 7]   # the running `make up` stack only

Starts a server of its own (SQLite, temporary PREFECT_HOME, set up and deployed as ``make up``
does, schedules off) and prints:

1. **collections**: the ``prefect.collections`` entry points of each environment, and what each
   costs when Prefect loads them (``load_prefect_collections``: a worker at its start; a flow run
   only when it looks a block up by its type, e.g. the S3 result storage), fresh processes, medians;
2. **imports**: one ``btc-hourly`` flow-run process (``python -X importtime -m prefect.engine``, the
   process worker's command) per environment, alternately: its import time, and the modules only
   one environment imports;
3. **runs**: ``btc-hourly`` runs on two process workers of one pool polling as ``make up``'s does,
   one per environment (a work queue each), alternately: trigger -> Completed seen from outside
   (``POST /deployments/{id}/create_flow_run``, then ``GET /flow_runs/{id}`` until final) and
   Created -> Completed in the run's state history, medians, the ratio of the main environment
   to the worker's own; the floor: Prefect's empty flow (``bench/floor_flow.py``) through the
   worker on its own environment. A run that does not end Completed stops the benchmark.

``--stack``: only trigger -> Completed of ``btc-hourly`` on the stack ``make up`` left running
(var/stack), seen from outside the same way, with the CPU seconds of its flow-run processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from btc_core.settings import PROJECT_ROOT
from deployments.deploy import prefect_cli, setup_and_deploy
from deployments.processes import BIN, prefect_env, start_server, start_worker, stop, stop_worker
from deployments.stack import DEFAULT_POLL_S, Stack
from deployments.worker_env import WORKER_VENV
from deployments.worker_env import sync as sync_worker_env
from infra.ports import pick_port

POOL = "btc-process"
DEPLOYMENTS = {"btc-hourly": "btc-pipeline/btc-hourly", "floor": "btc-floor/btc-floor"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
GOAL_TRIGGER_S = 2.5
PHASES = (
    ("Scheduled", "Pending", "worker picks the run up"),
    ("Pending", "Running", "flow-run process starts (Python, imports, pull step, engine)"),
    ("Running", "Completed", "the run itself"),
)
# In a fresh process: `import prefect`, then each collection in turn (cumulative imports shared
# with an earlier collection count for the earlier one).
COLLECTIONS_COST = """
import json, time
started = time.perf_counter()
import prefect
from importlib.metadata import entry_points
took = {"import prefect": time.perf_counter() - started}
for ep in sorted(entry_points(group="prefect.collections"), key=lambda e: e.name):
    started = time.perf_counter()
    ep.load()
    took[ep.name] = time.perf_counter() - started
print(json.dumps(took))
"""


def median(values: list[float]) -> float:
    return statistics.median(values)


def python_of(bin_dir: Path) -> str:
    return str(bin_dir / "python")


# --- 1. collections -----------------------------------------------------------------------------


def collections_cost(envs: dict[str, Path], rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds of ``import prefect`` and of each collection's import, per environment."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in envs}
    for _ in range(rounds):
        for name, bin_dir in envs.items():
            out = subprocess.run(
                [python_of(bin_dir), "-c", COLLECTIONS_COST],
                capture_output=True,
                text=True,
                check=True,
                cwd=PROJECT_ROOT,
            ).stdout
            for what, seconds in json.loads(out).items():
                samples[name].setdefault(what, []).append(seconds)
    return {name: {k: median(v) for k, v in took.items()} for name, took in samples.items()}


# --- 2. the flow-run process's imports ----------------------------------------------------------


def importtime_rows(stderr: str) -> dict[str, float]:
    """Module -> its own import milliseconds, from ``-X importtime`` output."""
    rows = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            _, own, _cumulative, name = line.replace(":", "|", 1).split("|")
            rows[name.strip()] = int(own) / 1000
    return rows


def engine_imports(
    api_url: str, home: Path, envs: dict[str, Path], rounds: int, workdir: Path
) -> dict[str, list[dict[str, float]]]:
    """``rounds`` btc-hourly runs per environment, each executed by ``python -X importtime -m
    prefect.engine`` as the process worker starts it (a run on a queue no worker polls); round 0
    (the first run draws the chart, later ones find it cached) is not counted."""
    found: dict[str, list[dict[str, float]]] = {name: [] for name in envs}
    for i in range(rounds + 1):
        for name, bin_dir in envs.items():
            run_id = create_run(api_url, DEPLOYMENTS["btc-hourly"], "by-hand")
            env = prefect_env(
                home,
                api_url,
                PREFECT__FLOW_RUN_ID=run_id,
                BTC_DB_PATH=str(workdir / "btc.duckdb"),
                PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            )
            with tempfile.TemporaryDirectory(prefix="btc-engine-") as cwd:
                done = subprocess.run(
                    [python_of(bin_dir), "-X", "importtime", "-m", "prefect.engine"],
                    env=env,
                    cwd=cwd,
                    capture_output=True,
                    text=True,
                )
            if done.returncode != 0 or run_state(api_url, run_id) != "COMPLETED":
                raise RuntimeError(f"flow run {run_id} did not complete:\n{done.stderr[-3000:]}")
            if i:
                found[name].append(importtime_rows(done.stderr))
    return found


# --- 3. runs through the workers, from outside --------------------------------------------------


def call(method: str, url: str, tries: int = 20, **kwargs: Any) -> Any:
    """The JSON answer of one REST call; a 503 (SQLite busy on a loaded machine) is asked again
    after 0.2 s, the wait counted in the caller's time like any slow answer."""
    for _ in range(tries - 1):
        answer = httpx.request(method, url, timeout=30, **kwargs)
        if answer.status_code != 503:
            break
        time.sleep(0.2)
    else:
        answer = httpx.request(method, url, timeout=30, **kwargs)
    answer.raise_for_status()
    return answer.json()


def create_run(api_url: str, deployment: str, queue: str) -> str:
    """A run of ``deployment`` on ``queue``, created through the REST API; its id."""
    found = call("GET", f"{api_url}/deployments/name/{deployment}")
    url = f"{api_url}/deployments/{found['id']}/create_flow_run"
    return call("POST", url, json={"work_queue_name": queue})["id"]


def run_state(api_url: str, run_id: str) -> str | None:
    """The run's state type as the REST API reports it."""
    state = call("GET", f"{api_url}/flow_runs/{run_id}").get("state")
    return state["type"] if state else None


def flow_cpu_s(worker_pid: int, timeout_s: float = 30) -> float:
    """CPU seconds of the worker's ended children so far (its flow-run processes, with what
    they ran: git), once it has none left running."""
    worker = psutil.Process(worker_pid)
    deadline = time.monotonic() + timeout_s
    while worker.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    times = worker.cpu_times()
    return times.children_user + times.children_system


def trigger_to_final(
    api_url: str, deployment: str, queue: str, worker_pid: int, timeout_s: float = 300
) -> dict:
    """Create a run, poll it every 50 ms until final: seconds from the create call to the answer
    that says Completed, the first timestamp of each state in its history, and the CPU seconds
    of its flow-run process (the worker polling ``queue`` runs nothing else)."""
    cpu_before = flow_cpu_s(worker_pid)
    started = time.perf_counter()
    run_id = create_run(api_url, deployment, queue)
    while (state := run_state(api_url, run_id)) not in FINAL:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"flow run {run_id} not final after {timeout_s:.0f} s")
        time.sleep(0.05)
    seen = time.perf_counter() - started
    if state != "COMPLETED":
        raise RuntimeError(f"flow run {run_id} ended {state}: not counted, benchmark stopped")
    history = call("GET", f"{api_url}/flow_run_states/", params={"flow_run_id": run_id})
    when: dict[str, datetime] = {}
    for each in history:
        when.setdefault(each["name"], datetime.fromisoformat(each["timestamp"]))
    return {"trigger_s": seen, "states": when, "cpu_s": flow_cpu_s(worker_pid) - cpu_before}


def alternate(
    api_url: str, cases: dict[str, tuple[str, str, int]], runs: int
) -> dict[str, dict[str, list[float]]]:
    """``runs`` runs of each case (deployment, queue, the PID of the worker polling it), in an
    order that turns each round; round 0 warms the workers up and is not counted."""
    results: dict[str, dict[str, list[float]]] = {
        case: {"trigger_s": [], "created_s": [], "cpu_s": [], **{x: [] for *_, x in PHASES}}
        for case in cases
    }
    names = list(cases)
    for i in range(runs + 1):
        for case in names[i % len(names) :] + names[: i % len(names)]:
            run = trigger_to_final(api_url, *cases[case])
            if not i:
                continue
            when = run["states"]
            results[case]["trigger_s"].append(run["trigger_s"])
            results[case]["cpu_s"].append(run["cpu_s"])
            results[case]["created_s"].append(
                (when["Completed"] - when["Scheduled"]).total_seconds()
            )
            for a, b, label in PHASES:
                results[case][label].append((when[b] - when[a]).total_seconds())
    return results


def quiet_server(api_url: str, queues: list[str]) -> None:
    """Schedules off and already scheduled runs deleted (only the benchmark's runs), and a work
    queue of the pool for each name."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.runs import stop_schedules

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        stop_schedules(client)
        for queue in queues:
            client.create_work_queue(name=queue, work_pool_name=POOL)


# --- the run ------------------------------------------------------------------------------------


def print_collections(cost: dict[str, dict[str, float]]) -> None:
    print("collections (prefect.collections entry points), load time in a fresh process, medians:")
    for name, took in cost.items():
        each = [f"{k} {v * 1000:.0f} ms" for k, v in took.items() if k != "import prefect"]
        total = sum(v for k, v in took.items() if k != "import prefect")
        print(
            f"  {name}: import prefect {took['import prefect'] * 1000:.0f} ms, then "
            f"{', '.join(each) or 'none'} (all: {total * 1000:.0f} ms)"
        )


def print_imports(found: dict[str, list[dict[str, float]]]) -> None:
    print("\nimports of one btc-hourly flow-run process (python -X importtime -m prefect.engine):")
    names = list(found)
    for name in names:
        totals = [sum(rows.values()) for rows in found[name]]
        loaded = sorted(
            {m for rows in found[name] for m in rows if m.startswith("prefect_") and "." not in m}
        )
        print(
            f"  {name}: {median(totals):.0f} ms of imports (median of {len(totals)}), "
            f"collections imported: {', '.join(loaded) or 'none'}"
        )
    for this, other in (names, names[::-1]):
        only = {m for rows in found[this] for m in rows} - {m for r in found[other] for m in r}
        own_ms = median([sum(ms for m, ms in rows.items() if m in only) for rows in found[this]])
        tops = sorted({m.split(".")[0] for m in only})
        print(f"  only in {this}: {len(only)} modules, {own_ms:.0f} ms ({', '.join(tops) or '-'})")


def spread(values: list[float]) -> str:
    """Median and range of ``values``, in seconds."""
    return f"{median(values):5.2f} ({min(values):.2f}-{max(values):.2f})"


def print_runs(results: dict[str, dict[str, list[float]]], runs: int) -> None:
    own, main, floor = results["own"], results["main"], results["floor"]
    print(
        f"\nruns through process workers polling every {DEFAULT_POLL_S:g} s, {runs} each, "
        "alternately; seconds, median (range):"
    )
    print(f"  {'':<30}{'trigger -> Completed':>22}{'Created -> Completed':>22}{'CPU of run':>20}")
    rows = (
        ("btc-hourly, worker's own env", own),
        ("btc-hourly, main env", main),
        ("floor (empty flow), own env", floor),
    )
    for label, each in rows:
        times = [spread(each[key]) for key in ("trigger_s", "created_s", "cpu_s")]
        print(f"  {label:<30}{times[0]:>22}{times[1]:>22}{times[2]:>20}")
    print("  Created -> Completed, by phase (medians):")
    for *_, phase in PHASES:
        medians = [f"{name} {median(r[phase]):.2f}" for name, r in results.items()]
        print(f"    {phase:<62} {', '.join(medians)}")
    print(
        f"  main env / own env: Created -> Completed ratio "
        f"{median(main['created_s']) / median(own['created_s']):.2f}, CPU of the flow-run "
        f"process ratio {median(main['cpu_s']) / median(own['cpu_s']):.2f}"
    )
    seen = median(own["trigger_s"])
    verdict = "met" if seen <= GOAL_TRIGGER_S else "MISSED"
    print(
        f"  make up's worker, trigger -> Completed from outside: {seen:.2f} s "
        f"(goal <= {GOAL_TRIGGER_S:g} s: {verdict}); the floor, Prefect's empty flow through "
        f"the same worker: {median(floor['trigger_s']):.2f} s"
    )


def on_stack(runs: int) -> None:
    """``runs`` btc-hourly runs on the running ``make up`` stack, one after the other, from
    outside; the first warms up and is not counted."""
    stack = Stack.load()
    if not stack.running() or not stack.worker_pids:
        raise SystemExit("no make up stack runs (var/stack): start one with make up")
    case = (DEPLOYMENTS["btc-hourly"], "default", stack.worker_pids[0])
    found = alternate(stack.api_url, {"make up": case}, runs)["make up"]
    verdict = "met" if median(found["trigger_s"]) <= GOAL_TRIGGER_S else "MISSED"
    goal = f"(goal <= {GOAL_TRIGGER_S:g} s: {verdict})"
    print(f"make up at {stack.url}, {runs} btc-hourly runs; seconds, median (range):")
    print(f"  trigger -> Completed from outside {spread(found['trigger_s'])} {goal}")
    print(f"  Created -> Completed              {spread(found['created_s'])}")
    print(f"  CPU of the flow-run process       {spread(found['cpu_s'])}")
    for *_, phase in PHASES:
        print(f"    {phase:<62} {median(found[phase]):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per case (>= 3)")
    parser.add_argument("--rounds", type=int, default=3, help="collection and import rounds")
    parser.add_argument("--port", type=int, default=4470, help="server port (or the next free)")
    parser.add_argument("--stack", action="store_true", help="only the running make up stack")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be >= 3 for a median")
    if args.stack:
        on_stack(args.runs)
        return 0

    envs = {"own": sync_worker_env(), "main": BIN}
    print(f"own: {WORKER_VENV} (make up's worker); main: {BIN.parent} (as make setup leaves it)")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print_collections(collections_cost(envs, args.rounds))

    workdir = Path(tempfile.mkdtemp(prefix="btc-worker-env-"))
    home = workdir / "prefect-home"
    port = pick_port(args.port)
    api_url = f"http://127.0.0.1:{port}/api"
    server = start_server(home, port, workdir / "server.log")
    workers = []
    try:
        setup_and_deploy(home, api_url, docker=False)
        floor = ("deploy", "bench/floor_flow.py:btc_floor", "--name", "btc-floor", "--pool", POOL)
        prefect_cli(home, api_url, *floor)
        quiet_server(api_url, [*envs, "by-hand"])
        print_imports(engine_imports(api_url, home, envs, args.rounds, workdir))
        for name, bin_dir in envs.items():
            log = workdir / f"worker-{name}.log"
            db = str(workdir / "btc.duckdb")
            workers.append(
                start_worker(
                    home,
                    api_url,
                    POOL,
                    log,
                    DEFAULT_POLL_S,
                    queue=name,
                    bin_dir=bin_dir,
                    BTC_DB_PATH=db,
                )
            )
        pids = {name: worker.pid for name, worker in zip(envs, workers, strict=True)}
        cases = {
            "own": (DEPLOYMENTS["btc-hourly"], "own", pids["own"]),
            "main": (DEPLOYMENTS["btc-hourly"], "main", pids["main"]),
            "floor": (DEPLOYMENTS["floor"], "own", pids["own"]),
        }
        print_runs(alternate(api_url, cases, args.runs), args.runs)
    finally:
        for worker in workers:
            stop_worker(worker.pid)
        stop(server.pid, sigints=1)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
