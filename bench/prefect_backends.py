"""SQLite versus PostgreSQL as the Prefect server's database: a 100-task flow and the real flow.

Starts one self-hosted server per backend: SQLite in a temporary PREFECT_HOME, and PostgreSQL on
127.0.0.1:5432 (user ``postgres``, trust auth) in a database created for this run and dropped
after it. The servers log the database errors they answer with 503 "retry"
(``PREFECT_API_LOG_RETRYABLE_ERRORS``), which clients retry after about 2 s without a word. On
each backend, medians after one warm-up run:

- **100 tasks**: in a fresh process per run, a flow maps a small btc_core-based task (the rounded
  mean of one slice of the replay prices) over 100 slices on Prefect's thread pool (unbounded:
  all 100 in flight). Its wall time; how long after it returned the server showed all 100 task
  runs Completed (task states reach the server as events, written in the background); task runs
  not Completed, flows not Completed.
- **the pipeline**: ``flows.btc.btc_pipeline`` on the replay slice, warm (one process, N runs,
  interleaved with the plain core on the same data), with the writer concurrency lease that
  ``deployments.setup`` creates.

and the requests the server answered 503 because its database was busy.

    uv run python -m bench.prefect_backends [--tasks 100] [--runs 3] [--repeats 5]
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT
from deployments.deploy import setup_and_deploy
from deployments.postgres import postgres_url, scratch_database
from deployments.processes import prefect_env, run_checked, start_server, stop
from infra.ports import pick_port

RETRYABLE = "Encountered retryable exception in request"
BACKENDS = ("sqlite", "postgres")


@dataclass
class Server:
    """A running server of this benchmark."""

    backend: str
    home: Path
    api_url: str
    log: Path

    def retried_requests(self) -> int:
        """Requests answered 503 (database busy or locked) so far."""
        return self.log.read_text(errors="replace").count(RETRYABLE)

    def env(self, **extra: str) -> dict[str, str]:
        return prefect_env(self.home, self.api_url, **extra)


@contextmanager
def server(backend: str, workdir: Path, setup: bool = True, port: int = 4500) -> Iterator[Server]:
    """A server on ``backend`` (with pools, blocks, limits and deployments if ``setup``), on
    ``port`` or the next free one, stopped by PID afterwards; for PostgreSQL, in a database of
    its own, dropped afterwards."""
    env = {"PREFECT_API_LOG_RETRYABLE_ERRORS": "true"}
    with ExitStack() as cleanup:
        if backend == "postgres":
            database = cleanup.enter_context(scratch_database("btc_prefect_bench"))
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres_url(database)
        home, log = workdir / f"home-{backend}", workdir / f"server-{backend}.log"
        port = pick_port(port)
        proc = start_server(home, port, log, **env)
        srv = Server(backend, home, f"http://127.0.0.1:{port}/api", log)
        try:
            if setup:
                setup_and_deploy(home, srv.api_url)
            yield srv
        finally:
            stop(proc.pid, sigints=1)


# --- 100 mapped tasks ----------------------------------------------------------------------------


def many_tasks_child(tasks: int) -> None:
    """Run the flow once against PREFECT_API_URL; print its id, state and wall time as JSON."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from btc_core.settings import Settings
    from btc_core.sources import Replay
    from btc_core.transform import round_cents

    @task(cache_policy=NO_CACHE)
    def slice_mean(prices: list[float]) -> float:
        """The rounded mean of one slice of prices (btc_core's half-even cents)."""
        return round_cents(statistics.fmean(prices))

    @flow(name="btc-backend-bench")
    def many_tasks(n: int) -> float:
        prices = Replay(Settings.from_env(env={})).fetch().price_usd.tolist()
        futures = slice_mean.map([prices[i::n] for i in range(n)])
        return round_cents(statistics.fmean(futures.result()))

    started = time.perf_counter()
    state = many_tasks(tasks, return_state=True)
    seconds = time.perf_counter() - started
    flow_run_id = str(state.state_details.flow_run_id)
    print(json.dumps({"flow_run_id": flow_run_id, "state": state.type.value, "seconds": seconds}))


def count_task_runs(api_url: str, flow_run_id: str, states: tuple[str, ...]) -> int:
    task_runs = {"flow_run_id": {"any_": [flow_run_id]}, "state": {"type": {"any_": list(states)}}}
    response = httpx.post(f"{api_url}/task_runs/count", json={"task_runs": task_runs}, timeout=10)
    response.raise_for_status()
    return int(response.json())


def many_tasks_once(srv: Server, tasks: int) -> tuple[float, float, int, bool]:
    """(flow seconds, seconds after the flow returned until the server shows every task run
    Completed, task runs still not Completed after 60 s, flow Completed?) of one fresh process."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.prefect_backends", "--child-tasks", str(tasks)],
        env=srv.env(PREFECT_LOGGING_LEVEL="WARNING"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if child.returncode != 0 or not child.stdout.strip():
        tail = "\n".join((child.stdout + child.stderr).splitlines()[-10:])
        raise RuntimeError(f"the 100-task flow failed on {srv.backend}:\n{tail}")
    returned = time.perf_counter()
    done = json.loads(child.stdout.strip().splitlines()[-1])
    deadline, completed = time.monotonic() + 60, 0
    while time.monotonic() < deadline:
        completed = count_task_runs(srv.api_url, done["flow_run_id"], ("COMPLETED",))
        if completed >= tasks:
            break
        time.sleep(0.05)
    lag = time.perf_counter() - returned
    return done["seconds"], lag, tasks - completed, done["state"] == "COMPLETED"


def many_tasks(srv: Server, tasks: int = 100, runs: int = 3) -> dict:
    """``runs`` measured runs of the 100-task flow (after one warm-up run)."""
    before = srv.retried_requests()
    flow_s, lag_s, not_completed, failed_flows = [], [], 0, 0
    for i in range(runs + 1):
        seconds, lag, missing, ok = many_tasks_once(srv, tasks)
        if i:
            flow_s.append(seconds)
            lag_s.append(lag)
            not_completed += missing
            failed_flows += 0 if ok else 1
    return {
        "tasks": tasks,
        "runs": runs,
        "flow_s": flow_s,
        "lag_s": lag_s,
        "flow_median_s": statistics.median(flow_s),
        "lag_median_s": statistics.median(lag_s),
        "task_runs_not_completed": not_completed,
        "flows_not_completed": failed_flows,
        "retried_requests": srv.retried_requests() - before,
    }


# --- the real flow, warm ---------------------------------------------------------------------------


def pipeline_child(repeats: int, out: Path) -> None:
    """``btc_pipeline()`` interleaved with the plain ``run_cycle`` on the same data, in this
    process, against PREFECT_API_URL. Each round replays a fresh copy of the slice, so
    extract's cache (keyed on the file) misses as it does for new data."""
    from btc_core.pipeline import run_cycle, store_for
    from btc_core.settings import Settings
    from btc_core.transform import export
    from flows.btc import btc_pipeline

    def ms(fn: Callable[[], object]) -> float:
        started = time.perf_counter()
        fn()
        return (time.perf_counter() - started) * 1000

    times: dict[str, list[float]] = {"plain": [], "prefect": []}
    with tempfile.TemporaryDirectory(prefix="btc-prefect-warm-") as tmp:
        for i in range(repeats + 1):
            replay = Path(tmp, f"replay{i}.csv")
            shutil.copyfile(DEFAULT_REPLAY_FILE, replay)
            plain = Settings.from_env(
                env={}, replay_file=replay, db_path=Path(tmp, f"plain{i}.duckdb"), notify="none"
            )
            db = Path(tmp, f"prefect{i}.duckdb")
            os.environ.update(BTC_REPLAY_FILE=str(replay), BTC_DB_PATH=str(db))
            took = {
                "plain": ms(lambda s=plain: run_cycle(s)),
                "prefect": ms(lambda: asyncio.run(btc_pipeline())),
            }
            prefect_out = export(store_for(Settings.from_env(env={}, db_path=db)))
            if prefect_out != export(store_for(plain)):
                raise SystemExit("the Prefect flow and the plain core disagree: run parity")
            if i:  # round 0 warms everything up
                for label, value in took.items():
                    times[label].append(value)
    out.write_text(json.dumps(times))


def pipeline_warm(srv: Server, repeats: int = 5) -> dict:
    """Medians (ms) of the plain core and of ``btc_pipeline()`` on ``srv``, warm."""
    before = srv.retried_requests()
    with tempfile.TemporaryDirectory(prefix="btc-pipeline-warm-") as tmp:
        out = Path(tmp) / "times.json"
        cmd = [sys.executable, "-m", "bench.prefect_backends", "--child-pipeline", str(out)]
        run_checked(
            [*cmd, "--repeats", str(repeats)],
            srv.env(BTC_NOTIFY="none", BTC_SOURCE="replay"),
            timeout_s=600,
            what=f"btc_pipeline on {srv.backend}",
        )
        times = json.loads(out.read_text())
    return {
        "repeats": repeats,
        "plain_ms": statistics.median(times["plain"]),
        "run_ms": statistics.median(times["prefect"]),
        "runs_ms": times["prefect"],
        "retried_requests": srv.retried_requests() - before,
    }


# --- both backends ---------------------------------------------------------------------------------


def compare(tasks: int = 100, runs: int = 3, repeats: int = 5) -> dict[str, dict]:
    """Both measurements on each backend, one backend after the other."""
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="btc-backends-") as tmp:
        for backend in BACKENDS:
            try:
                with server(backend, Path(tmp)) as srv:
                    results[backend] = {
                        "many_tasks": many_tasks(srv, tasks, runs),
                        "pipeline": pipeline_warm(srv, repeats),
                    }
            except RuntimeError as exc:
                results[backend] = {"error": str(exc)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="measured 100-task runs per backend")
    parser.add_argument("--repeats", type=int, default=5, help="measured pipeline runs")
    parser.add_argument("--child-tasks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-pipeline", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_tasks:
        many_tasks_child(args.child_tasks)
        return 0
    if args.child_pipeline:
        pipeline_child(args.repeats, args.child_pipeline)
        return 0
    results = compare(args.tasks, args.runs, args.repeats)
    print(
        f"medians; {args.runs} runs of the {args.tasks}-task flow, {args.repeats} of the pipeline"
    )
    for backend, r in results.items():
        if "error" in r:
            print(f"{backend:8s}: ERROR {r['error']}")
            continue
        t, p = r["many_tasks"], r["pipeline"]
        print(
            f"{backend:8s}: {args.tasks} tasks {t['flow_median_s']:5.2f} s (all recorded "
            f"{t['lag_median_s']:4.1f} s later; {t['task_runs_not_completed']} task runs and "
            f"{t['flows_not_completed']} flows not Completed; {t['retried_requests']} requests "
            f"answered 503)"
        )
        print(
            f"{'':8s}  btc_pipeline {p['run_ms']:6.0f} ms vs plain {p['plain_ms']:4.0f} ms "
            f"({p['retried_requests']} requests answered 503)"
        )
    if all("error" not in r for r in results.values()):
        sq, pg = (results[b]["many_tasks"]["flow_median_s"] for b in BACKENDS)
        print(f"postgres vs sqlite, {args.tasks}-task flow: ratio {pg / sq:.2f}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
