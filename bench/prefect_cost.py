"""What the Prefect path costs, against Prefect's own floor, in one run on one server.

    uv run python -m bench.prefect_cost [--repeats 7] [--runs 5] [--port 4460] [--json FILE]

Starts a server of its own (SQLite, temporary PREFECT_HOME, pools and deployments set up as
``make up`` does) and prints, each against a baseline measured in the same run:

1. **warm**: ``btc_pipeline()`` in one process vs the plain ``run_cycle`` on the same data,
   interleaved, a fresh DuckDB and replay copy per run; and the *floor*: an empty async flow with
   the same three tasks doing nothing (what Prefect costs with nothing in it), plus the same
   floor as a sync flow (the heartbeat join the async flow avoids).
2. **cold**: whole processes, ``python flows/btc.py`` (server running) vs ``btc run``, and the
   floor of that ratio: the empty flow as a script (``python bench/floor_flow.py``) with the plain
   run's work on top.
3. **trigger**: a ``btc-hourly`` run created through the API -> Completed, through a process
   worker with the project's polling (``make up``), with the seconds split by the run's state
   history: waiting for the worker, starting the flow-run process, running, reporting.
4. **warm path**: ``btc_refresh.delay()`` -> result, and an event -> completed refresh, on the
   already running ``python -m flows.warm``.
5. **imports**: the ten most expensive imports of ``import flows.btc`` (``python -X importtime``),
   and none of the modules only some runs need.

``--json FILE`` also writes every number it prints, and the goals, to FILE (read by
``scripts/comparison``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.common import cold_floor_ms, timed
from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT
from deployments.deploy import prefect_cli, setup_and_deploy
from deployments.processes import (
    prefect_env,
    run_checked,
    start_server,
    start_warm_path,
    start_worker,
    stop,
)
from deployments.stack import DEFAULT_POLL_S
from infra.ports import pick_port

BIN = Path(sys.executable).parent
# Imported only by the runs that need them (charts, S3 results, cluster workers, DataFrames).
LAZY = ("matplotlib", "boto3", "botocore", "prefect_aws", "dask", "distributed", "kubernetes")
GOALS = {"warm_ms": 250.0, "cold_ratio": 3.0, "trigger_s": 2.5, "warm_path_s": 1.0}


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- 1. warm, in one process --------------------------------------------------------------------


def warm_child(repeats: int, out: Path) -> None:
    """Interleaved warm runs of the plain core, the flow and the two floors; medians to ``out``."""
    from bench.floor_flow import btc_floor, btc_floor_sync
    from btc_core.pipeline import run_cycle
    from btc_core.settings import Settings
    from flows.btc import btc_pipeline

    times: dict[str, list[float]] = {k: [] for k in ("plain", "prefect", "floor", "floor_sync")}
    with tempfile.TemporaryDirectory(prefix="btc-cost-") as tmp:
        for i in range(repeats + 1):
            replay = Path(tmp, f"replay{i}.csv")
            shutil.copyfile(DEFAULT_REPLAY_FILE, replay)
            plain = Settings.from_env(
                replay_file=replay, db_path=Path(tmp, f"plain{i}.duckdb"), notify="none"
            )
            os.environ.update(BTC_REPLAY_FILE=str(replay), BTC_DB_PATH=str(Path(tmp, f"f{i}.db")))
            took = {
                "plain": timed(lambda s=plain: run_cycle(s)),
                "prefect": timed(lambda: asyncio.run(btc_pipeline())),
                "floor": timed(lambda: asyncio.run(btc_floor())),
                "floor_sync": timed(btc_floor_sync),
            }
            if i:  # round 0 warms everything up
                for label, value in took.items():
                    times[label].append(value)
    out.write_text(json.dumps({k: median(v) for k, v in times.items()}))


def warm(env: dict[str, str], repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "warm.json")
        run_checked(
            [
                sys.executable,
                "-m",
                "bench.prefect_cost",
                "--child-warm",
                str(out),
                "--repeats",
                str(repeats),
            ],
            env,
        )
        return json.loads(out.read_text())


# --- 2. cold, whole processes -------------------------------------------------------------------


def cold(env: dict[str, str], rounds: int, workdir: Path) -> dict[str, float]:
    """Medians (ms) of fresh processes, in turn: the flow script, the plain CLI, the empty flow
    as a script (Prefect's cold floor) and the bare interpreter."""
    commands = {
        "prefect": [sys.executable, str(PROJECT_ROOT / "flows" / "btc.py")],
        "plain": [str(BIN / "btc"), "run"],
        "floor": [sys.executable, str(PROJECT_ROOT / "bench" / "floor_flow.py")],
        "python": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(rounds + 1):
        replay = workdir / f"cold{i}.csv"
        shutil.copyfile(DEFAULT_REPLAY_FILE, replay)
        for name, cmd in commands.items():
            each = {**env, "BTC_REPLAY_FILE": str(replay), "BTC_DB_PATH": f"{workdir}/{name}{i}.db"}
            ms = timed(lambda cmd=cmd, each=each: run_checked(cmd, each))
            if i:  # round 0 warms the disk cache
                times[name].append(ms)
    return {k: median(v) for k, v in times.items()}


# --- 3. trigger -> Completed through a worker ---------------------------------------------------

PHASES = (
    ("Scheduled", "Pending", "worker picks the run up"),
    ("Pending", "Running", "flow-run process starts (Python, imports, engine)"),
    ("Running", "Completed", "the run itself"),
)


DEPLOYMENTS = {"btc-hourly": "btc-pipeline/btc-hourly", "floor": "btc-floor/btc-floor"}


def trigger(api_url: str, runs: int) -> dict[str, dict[str, list[float]]]:
    """Runs of ``btc-hourly`` and of the empty-flow deployment, alternately, on one worker. For
    each run: seconds from creation to Completed on the server (its state history), each phase
    of that history, and how much later Prefect's event-based ``wait_for_flow_run`` saw it."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import wait_for_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    results = {
        name: {"runs_s": [], "lag_s": [], **{label: [] for _, _, label in PHASES}}
        for name in DEPLOYMENTS
    }
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        ids = {name: client.read_deployment_by_name(d).id for name, d in DEPLOYMENTS.items()}
        for i in range(runs + 1):
            for name, deployment_id in ids.items():
                started = time.perf_counter()
                run_id = client.create_flow_run_from_deployment(deployment_id).id
                final = asyncio.run(wait_for_flow_run(run_id, timeout=300))
                observed = time.perf_counter() - started
                if not final.state or not final.state.is_completed():
                    raise RuntimeError(f"run {run_id} ended {final.state}")
                if not i:  # the first round warms the worker and the server up
                    continue
                when = first_states(client, run_id)
                total = (when["Completed"] - when["Scheduled"]).total_seconds()
                results[name]["runs_s"].append(total)
                results[name]["lag_s"].append(observed - total)
                for a, b, label in PHASES:
                    results[name][label].append((when[b] - when[a]).total_seconds())
    return results


def first_states(client: object, run_id: UUID) -> dict[str, Any]:
    """The first timestamp of each state the run went through."""
    when: dict[str, Any] = {}
    for state in client.read_flow_run_states(run_id):  # type: ignore[attr-defined]
        when.setdefault(state.name, state.timestamp)
    return when


# --- 4. the warm path ---------------------------------------------------------------------------


def warm_path(env: dict[str, str], workdir: Path, runs: int) -> dict[str, list[float]]:
    """``python -m flows.warm`` started once; API calls and events timed against it."""
    proc = start_warm_path(env, workdir / "warm.log")
    try:
        out = workdir / "warm-path.json"
        run_checked(
            [
                sys.executable,
                "-m",
                "bench.prefect_cost",
                "--child-warm-path",
                str(out),
                "--runs",
                str(runs),
            ],
            env,
        )
        return json.loads(out.read_text())
    finally:
        stop(proc.pid, sigints=1)


def warm_path_child(runs: int, out: Path) -> None:
    """``runs`` API calls (``btc_refresh.delay()``) and ``runs`` events, one after the other:
    seconds from the call or the event to the refresh's Completed state on the server, and for
    the API call how much later ``.result()`` (Prefect's event-based wait) returned."""
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.events import emit_event

    from flows.warm import EVENT, btc_refresh

    def completed_at(client: Any, task_run_id: UUID) -> datetime:
        """When the server recorded the run Completed: task-run states reach it as events, so
        they may land a moment after the caller saw the result."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for state in client.read_task_run_states(task_run_id):
                if state.name == "Completed":
                    return state.timestamp
            time.sleep(0.05)
        raise RuntimeError(f"task run {task_run_id}: no Completed state on the server after 60 s")

    def refreshes(client: Any) -> set[UUID]:
        found = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["btc-refresh"]))
        )
        return {r.id for r in found}

    results: dict[str, list[float]] = {"api": [], "api_result": [], "event": []}
    with get_client(sync_client=True) as client:
        for i in range(runs + 1):
            asked, started = datetime.now(UTC), time.perf_counter()
            future = btc_refresh.delay()
            future.result(timeout=120)
            waited = time.perf_counter() - started
            done = completed_at(client, future.task_run_id)
            before = refreshes(client)
            emitted = datetime.now(UTC)
            emit_event(event=EVENT, resource={"prefect.resource.id": "btc.replay.bench"})
            new: set[UUID] = set()
            while not new:
                time.sleep(0.05)
                new = refreshes(client) - before
            event_done = completed_at(client, new.pop())
            if i:  # the first round warms up
                results["api"].append((done - asked).total_seconds())
                results["api_result"].append(waited)
                results["event"].append((event_done - emitted).total_seconds())
    out.write_text(json.dumps(results))


# --- 5. imports ---------------------------------------------------------------------------------


def import_budget() -> tuple[float, list[tuple[float, str]], list[str]]:
    """Total ms of ``import flows.btc``, the ten most expensive imports (cumulative ms, in the
    process that imports them first), and the lazy-only modules it imported anyway."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flows.btc"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, _self, cumulative_us, name = (
            part.strip() for part in line.replace(":", "|", 1).split("|")
        )
        rows.append((int(cumulative_us) / 1000, name))
    total = next(ms for ms, name in rows if name == "flows.btc")
    names = {name.split(".")[0] for _, name in rows}
    top = sorted(((ms, name) for ms, name in rows if name != "flows.btc"), reverse=True)[:10]
    return total, top, [m for m in LAZY if m in names]


# --- the run ------------------------------------------------------------------------------------


def report(label: str, value: float, goal: float, unit: str) -> str:
    verdict = "met" if value <= goal else "MISSED"
    return f"{label}: {value:.2f}{unit} (goal <= {goal:g}{unit}: {verdict})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="warm runs per path")
    parser.add_argument("--runs", type=int, default=5, help="cold, trigger and warm-path runs")
    parser.add_argument("--port", type=int, default=4460, help="server port (or the next free)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--child-warm", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-warm-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_warm:
        warm_child(args.repeats, args.child_warm)
        return 0
    if args.child_warm_path:
        warm_path_child(args.runs, args.child_warm_path)
        return 0

    total, top, eager = import_budget()
    measured: dict[str, object] = {"repeats": args.repeats, "runs": args.runs, "goals": GOALS}
    top_ms = [{"module": name, "ms": ms} for ms, name in top]
    measured["imports"] = {"total_ms": total, "top": top_ms, "lazy": LAZY, "lazy_imported": eager}
    print(f"imports: `import flows.btc` {total:.0f} ms; the ten most expensive (cumulative):")
    for ms, name in top:
        print(f"  {ms:7.0f} ms  {name}")
    print(f"  lazy-only modules imported anyway: {', '.join(eager) or 'none'}")

    workdir = Path(tempfile.mkdtemp(prefix="btc-prefect-cost-"))
    port = pick_port(args.port)
    api_url = f"http://127.0.0.1:{port}/api"
    home = workdir / "prefect-home"
    server = start_server(home, port, workdir / "server.log")
    quiet = {"BTC_NOTIFY": "none", "PREFECT_LOGGING_LEVEL": "WARNING"}
    env = prefect_env(home, api_url, **quiet, BTC_DB_PATH=str(workdir / "btc.duckdb"))
    try:
        setup_and_deploy(home, api_url)
        prefect_cli(
            home,
            api_url,
            "deploy",
            "bench/floor_flow.py:btc_floor",
            "--name",
            "btc-floor",
            "--pool",
            "btc-process",
        )
        w = measured["warm_ms"] = warm(env, args.repeats)
        over, floor = w["prefect"] - w["plain"], w["floor"]
        print(f"\nwarm, {args.repeats} interleaved runs, medians:")
        print(f"  plain run_cycle {w['plain']:.0f} ms; btc_pipeline() {w['prefect']:.0f} ms")
        print(
            f"  floor: empty async flow + 3 tasks {floor:.0f} ms (sync: {w['floor_sync']:.0f} ms)"
        )
        print("  " + report("overhead over plain", over, GOALS["warm_ms"], " ms"))
        print(f"  over the floor: {over - floor:+.0f} ms (ratio to the floor {over / floor:.2f})")

        c = measured["cold_ms"] = cold(env, args.runs, workdir)
        ratio = c["prefect"] / c["plain"]
        print(f"\ncold, {args.runs} fresh processes each, medians:")
        print(f"  python flows/btc.py {c['prefect']:.0f} ms; btc run {c['plain']:.0f} ms")
        print("  " + report("ratio", ratio, GOALS["cold_ratio"], "x"))
        at_floor = cold_floor_ms(c)
        print(
            f"  floor: the empty flow as a script {c['floor']:.0f} ms (python alone "
            f"{c['python']:.0f} ms); with the plain run's work on top {at_floor:.0f} ms, "
            f"ratio {at_floor / c['plain']:.2f}x; the flow is {c['prefect'] - at_floor:+.0f} ms "
            "from it"
        )

        worker = start_worker(
            home, api_url, "btc-process", workdir / "worker.log", DEFAULT_POLL_S, **quiet
        )
        try:
            t = trigger(api_url, args.runs)
        finally:
            stop(worker.pid, sigints=2)
        ours, empty = t["btc-hourly"], t["floor"]
        print(
            f"\ntrigger -> Completed on the server, a process worker polling every "
            f"{DEFAULT_POLL_S:g} s, {args.runs} runs each, alternately:"
        )
        runs = ", ".join(f"{x:.1f}" for x in ours["runs_s"])
        print(
            "  "
            + report("btc-hourly", median(ours["runs_s"]), GOALS["trigger_s"], " s")
            + f"  [{runs}]"
        )
        floor_s = median(empty["runs_s"])
        print(f"  floor, an empty flow deployed the same way: {floor_s:.2f} s")
        for _, _, label in PHASES:
            print(
                f"    {median(ours[label]):5.2f} s (floor {median(empty[label]):5.2f} s)  {label}"
            )
        lag = median(ours["lag_s"])
        print(f"  then {lag:.2f} s until wait_for_flow_run (events) saw the Completed state")
        measured["trigger"] = {
            "poll_s": DEFAULT_POLL_S,
            "runs_s": ours["runs_s"],
            "floor_runs_s": empty["runs_s"],
            "observed_lag_s": ours["lag_s"],
            "phases": [
                {"from": a, "to": b, "phase": label, "runs_s": ours[label], "floor_s": empty[label]}
                for a, b, label in PHASES
            ],
        }

        p = measured["warm_path_s"] = warm_path(env, workdir, args.runs)
        print(f"\nwarm path (python -m flows.warm, already running), {args.runs} runs each:")
        print("  " + report("API call -> Completed", median(p["api"]), GOALS["warm_path_s"], " s"))
        print(
            f"    (.result() returned after {median(p['api_result']):.2f} s: its wait is event-based)"
        )
        print("  " + report("event -> Completed", median(p["event"]), GOALS["warm_path_s"], " s"))
    finally:
        stop(server.pid, sigints=1)
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
