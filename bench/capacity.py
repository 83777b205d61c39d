"""Capacity: runs per minute sustained against offered load, for each setup, against the CPU limit.

Each setup is brought up here, on free ports, with a PREFECT_HOME in a temporary folder: a
SQLite server and one process worker; a PostgreSQL server (scratch database) and one worker, then
two; the warm path (flows/warm.py, ``btc_refresh.delay()``) on a SQLite server; PostgreSQL and
one worker with the settings item 4 of issue 32 tuned (``Setup``). Runs of
btc-hourly (or refreshes) are started at a fixed rate for a window, at rising rates until the
setup no longer keeps up. A run counts once the REST API shows it Completed; a batch with a run
not Completed, or started Late by more than 60 s, is refused. Runs/min = completed runs / the
offered window, or / (first trigger -> last Completed) when that took longer. The CPU limit is cores x 60 / (CPU seconds per run of every process
of the setup, psutil), and the bottleneck the part with the most of them, profiled with py-spy
if it is on PATH. The worker's and the server's RSS are sampled throughout. Writes
docs/capacity.md and docs/img/capacity.png, and the results in var/capacity.json. py-spy, if
wanted, is not a project dependency: ``uv tool install py-spy``.

    uv run python -m bench.capacity [--quick] [--memory-runs 1000] [--setups a,b,c,d,e]
    uv run python -m bench.capacity --render var/capacity.json [var/more.json]  # no measuring
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID

import httpx
import psutil
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_RESULTS_LOCAL_STORAGE_PATH,
    temporary_settings,
)

from bench.capacity_meter import Meter
from bench.capacity_page import write_page
from bench.capacity_stats import (
    Run,
    bottleneck,
    cpu_per_run,
    late_s,
    refusal,
    runs_per_minute,
    saturated,
)
from btc_core.settings import PROJECT_ROOT
from deployments.deploy import prefect_cli, setup_and_deploy
from deployments.postgres import postgres_url, scratch_database
from deployments.processes import (
    BIN,
    log_tail,
    prefect_env,
    start_server,
    start_warm_path,
    start_worker,
    stop,
    stop_worker,
)
from deployments.runs import start_run
from deployments.stack import DEFAULT_POLL_S
from deployments.worker_env import sync as sync_worker_env
from infra.ports import pick_port

DEPLOYMENT = "btc-pipeline/btc-hourly"
RESULTS = PROJECT_ROOT / "var"  # <page name>.json: the results behind each page written
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass(frozen=True)
class Setup:
    """One setup: its key, label, database, process workers (0: the warm path instead), and the
    settings item 4 tunes: the code source of the deployment (``BTC_CODE_SOURCE``, default git),
    the pool's concurrency limit and the workers' polling interval; the workers run from their
    own environment var/worker-venv as ``make up``'s do (``worker_venv``; results saved before
    it existed were measured with workers on .venv)."""

    key: str
    label: str
    backend: str
    workers: int
    code_source: str = ""
    pool_limit: int | None = None
    poll_s: float = DEFAULT_POLL_S
    worker_venv: bool = True
    rate_scale: float = 1.0  # the offered rates are multiplied by it (the warm path: far faster)

    @property
    def warm(self) -> bool:
        return self.workers == 0


SETUPS = {
    s.key: s
    for s in (
        Setup("a", "SQLite + 1 worker", "sqlite", 1),
        Setup("b", "PostgreSQL + 1 worker", "postgres", 1),
        Setup("c", "PostgreSQL + 2 workers", "postgres", 2),
        Setup("d", "warm path (SQLite)", "sqlite", 0, rate_scale=8),
        Setup(
            "e",
            "PostgreSQL + 1 worker, tuned",
            "postgres",
            1,
            code_source="path",
            pool_limit=os.cpu_count() or 1,
            poll_s=2.0,
        ),
    )
}


@dataclass
class Load:
    """One offered rate's batch and what came of it."""

    offered: float
    runs: int
    achieved: float
    refused: str | None
    median_s: float
    max_late_s: float
    cpu_per_run: dict[str, float]
    others_cores: float  # CPU the machine's other processes used meanwhile, in cores
    profile: str  # py-spy's summary of the part profiled (the batch before's bottleneck)


@dataclass
class Result:
    """A setup's loads, memory samples (runs so far, part -> RSS MiB), the long batch for
    memory (``--memory-runs``), or why it failed."""

    setup: Setup
    loads: list[Load] = field(default_factory=list)
    memory: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    failed: str = ""
    memory_batch: Load | None = None


@dataclass
class Stack:
    """A running setup: where it answers, what to meter, how to trigger and read a run."""

    api_url: str
    meter: Meter
    trigger: Callable[[], UUID]
    kind: str  # flow_runs or task_runs
    workdir: Path


def read_runs(api_url: str, kind: str, ids: list[UUID]) -> list[Run]:
    """The runs as the REST API shows them now (200 a request, the API's most)."""
    found = []
    for first in range(0, len(ids), 200):
        chunk = [str(i) for i in ids[first : first + 200]]
        answer = httpx.post(
            f"{api_url}/{kind}/filter", json={kind: {"id": {"any_": chunk}}}, timeout=30
        )
        answer.raise_for_status()
        found += answer.json()

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return [
        Run(
            state=r["state_name"] or "",
            created=when(r["created"]) or datetime.now(UTC),
            expected_start=when(r["expected_start_time"]),
            started=when(r["start_time"]),
            ended=when(r["end_time"]) if r["state_type"] == "COMPLETED" else None,
        )
        for r in found
    ]


def offer(
    stack: Stack,
    result: Result,
    rate: float,
    window_s: float,
    drain_s: float,
    done_before: int,
    spy_on: str = "",
) -> Load:
    """Start runs at ``rate`` per minute for ``window_s``, wait up to ``drain_s`` more for their
    end, sampling memory on the way (and profiling the part ``spy_on`` during the window); the
    batch's figures."""
    count = max(2, round(rate * window_s / 60))
    pid = stack.meter.pid_of(spy_on)
    raw = stack.workdir / f"profile-{rate:g}.txt"
    spy = profile(pid, int(window_s), raw) if pid else None
    before, busy_before, own_before = stack.meter.totals(), busy_s(), own_s()
    ids: list[UUID] = []
    started = time.monotonic()
    runs: list[Run] = []
    next_sample = 0.0

    def sample() -> None:
        nonlocal runs, next_sample
        if time.monotonic() < next_sample or not ids:
            return
        next_sample = time.monotonic() + 2
        runs = read_runs(stack.api_url, stack.kind, ids)
        done = sum(r.ended is not None for r in runs)
        stack.meter.sample_backends()
        result.memory.append((done_before + done, stack.meter.memory()))

    for i in range(count):
        while time.monotonic() < started + i * 60 / rate:
            sample()
            time.sleep(0.05)
        ids.append(stack.trigger())
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        next_sample = 0.0
        sample()
        if len(runs) == count and all(r.state.upper() in FINAL for r in runs):
            break
        time.sleep(1)
    runs = read_runs(stack.api_url, stack.kind, ids)
    after = stack.meter.totals()
    done = [r for r in runs if r.ended is not None]
    missing = count - len(runs)
    reason = refusal(runs) or (f"{missing} runs not found" if missing else None)
    if reason and not all(r.state.upper() in FINAL for r in runs):
        reason += f" within {drain_s:.0f} s of the window's end"
    lates = [x for r in runs if (x := late_s(r)) is not None]
    spans = sorted((r.ended - r.created).total_seconds() for r in done if r.ended)
    return Load(
        offered=rate,
        runs=count,
        achieved=runs_per_minute(runs, count * 60 / rate),
        refused=reason,
        median_s=spans[len(spans) // 2] if spans else 0.0,
        max_late_s=max(lates, default=0.0),
        cpu_per_run=cpu_per_run(before, after, max(len(done), 1)),
        others_cores=max(
            busy_s()
            - busy_before
            - (own_s() - own_before)
            - sum(after.values())
            + sum(before.values()),
            0,
        )
        / (time.monotonic() - started),
        profile=spied(spy, raw, spy_on),
    )


def own_s() -> float:
    """CPU seconds of this process (the load generator)."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def busy_s() -> float:
    """CPU seconds the whole machine has been busy (every process, every core)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen | None:
    """``py-spy record`` of ``pid`` and its subprocesses in the background (None without py-spy)."""
    spy = shutil.which("py-spy")
    if not spy:
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def spied(spy: subprocess.Popen | None, raw: Path, part: str) -> str:
    """The summary of a finished ``py-spy record`` of ``part`` (empty without one)."""
    if spy is None:
        return ""
    spy.wait(timeout=60)
    hot = hot_functions(raw)
    return f"{part}: {hot}" if hot else ""


def hot_functions(raw: Path, top: int = 3) -> str:
    """From a py-spy raw (collapsed) profile: the share of samples spent importing modules, and
    the functions most often on top of the stack (line numbers dropped)."""
    if not raw.exists():
        return ""
    leaves: dict[str, int] = {}
    total = importing = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames or not count.isdigit():
            continue
        n = int(count)
        total += n
        importing += n if any(f.startswith("_find_and_load ") for f in frames) else 0
        leaf = frames[-1].rsplit(":", 1)[0] + ")" if ":" in frames[-1] else frames[-1]
        leaves[leaf] = leaves.get(leaf, 0) + n
    if not total:
        return ""
    best = sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
    hot = "; ".join(f"`{name}` {n / total:.0%}" for name, n in best)
    return f"importing modules {importing / total:.0%} of the samples; on top: {hot}"


def wait_for_line(log: Path, text: str, timeout_s: float = 120) -> None:
    """Block until ``text`` is in ``log``, or fail with the log's end."""
    deadline = time.monotonic() + timeout_s
    while not (log.exists() and text in log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} in {log} after {timeout_s:.0f} s{log_tail(log)}")
        time.sleep(0.2)


@contextmanager
def bring_up(setup: Setup, workdir: Path) -> Iterator[Stack]:
    """The setup's server (and database), deployments, workers or warm path; all stopped by PID
    (workers first) and the database dropped afterwards."""
    with ExitStack() as cleanup:
        env: dict[str, str] = {}
        meter = Meter()
        if setup.backend == "postgres":
            database = cleanup.enter_context(scratch_database("btc_capacity"))
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres_url(database)
            meter.database = database
        home = workdir / "home"
        port = pick_port(4860)
        server = start_server(home, port, workdir / "server.log", **env)
        cleanup.callback(stop, server.pid, sigints=1)
        api_url = f"http://127.0.0.1:{port}/api"
        meter.trees["server"] = server.pid
        db = str(workdir / "btc.duckdb")  # each run's settings: no notification, no chart
        if setup.warm:
            results = workdir / "results"
            warm_env = prefect_env(
                home,
                api_url,
                PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(results),
                BTC_DB_PATH=db,
                BTC_NOTIFY="none",
                BTC_ARTIFACTS="summary",
                BTC_CHART="none",
            )
            warm = start_warm_path(warm_env, workdir / "warm.log")
            cleanup.callback(stop, warm.pid, sigints=1)
            meter.trees["warm path"] = warm.pid
            settings = {PREFECT_API_URL: api_url, PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}
            cleanup.enter_context(temporary_settings(settings))
            from flows.warm import btc_refresh

            yield Stack(
                api_url, meter, lambda: btc_refresh.delay().task_run_id, "task_runs", workdir
            )
            return
        with mock.patch.dict(os.environ, {"BTC_CODE_SOURCE": setup.code_source or "git"}):
            setup_and_deploy(home, api_url, docker=False)
        prefect_cli(home, api_url, "deployment", "schedule", "pause", "--all")
        if setup.pool_limit:
            prefect_cli(
                home,
                api_url,
                "work-pool",
                "set-concurrency-limit",
                "btc-process",
                str(setup.pool_limit),
            )
        bin_dir = sync_worker_env() if setup.worker_venv else BIN
        for i in range(setup.workers):
            log = workdir / f"worker{i + 1}.log"
            worker = start_worker(
                home,
                api_url,
                "btc-process",
                log,
                setup.poll_s,
                bin_dir=bin_dir,
                BTC_DB_PATH=db,
                BTC_NOTIFY="none",
                BTC_ARTIFACTS="summary",
                BTC_CHART="none",
            )
            cleanup.callback(stop_worker, worker.pid)
            meter.workers[f"worker {i + 1}"] = worker.pid
        for i in range(setup.workers):  # their start-up is not the runs' cost
            wait_for_line(workdir / f"worker{i + 1}.log", "started!")
        yield Stack(api_url, meter, lambda: start_run(api_url, DEPLOYMENT).id, "flow_runs", workdir)


def measure(setup: Setup, rates: list[float], window_s: float, memory_runs: int) -> Result:
    """Rising loads until the setup stops keeping up (or a batch is refused), each profiling
    the bottleneck of the one before, then (``memory_runs``) a long batch for memory."""
    if memory_runs:  # its own line on the page, beside the setups measured without it
        setup = replace(setup, label=f"{setup.label}, {memory_runs} runs more for memory")
    result = Result(setup)
    began = time.monotonic()
    rates = [rate * setup.rate_scale for rate in rates]
    with tempfile.TemporaryDirectory(prefix=f"btc-capacity-{setup.key}-") as tmp:
        try:
            with bring_up(setup, Path(tmp)) as stack:
                print(f"{setup.label}: up in {time.monotonic() - began:.0f} s", flush=True)
                done = 0
                spy_on = "flow-run processes" if stack.meter.workers else "warm path"
                for rate in rates:
                    load = offer(stack, result, rate, window_s, max(60, window_s), done, spy_on)
                    done += load.runs
                    result.loads.append(load)
                    spy_on = bottleneck(load.cpu_per_run)[0]
                    print(
                        f"{setup.label}: offered {rate:g}/min -> {load.achieved:.1f}/min"
                        f" {load.refused or ''}",
                        flush=True,
                    )
                    if load.refused or saturated(rate, load.achieved):
                        break
                if memory_runs:
                    kept = [x for x in result.loads if not x.refused] or result.loads
                    rate = max(x.achieved for x in kept) or rates[0]
                    window = memory_runs / rate * 60
                    result.memory_batch = offer(stack, result, rate, window, 600, done)
        except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
            result.failed = " / ".join(dict.fromkeys([lines[0], *lines[-2:]]))[:400]
            print(f"{setup.label}: failed: {exc}", flush=True)
    print(f"{setup.label}: done in {time.monotonic() - began:.0f} s", flush=True)
    return result


def save(path: Path, results: list[Result], meta: dict[str, Any]) -> None:
    """The results and how they were measured, as JSON (``--render`` writes the page again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=1))


def load(path: Path) -> tuple[list[Result], dict[str, Any]]:
    """What :func:`save` wrote."""
    data = json.loads(path.read_text())
    results = [
        Result(
            Setup(**{"worker_venv": False, **r["setup"]}),
            [Load(**x) for x in r["loads"]],
            [(n, rss) for n, rss in r["memory"]],
            r["failed"],
            Load(**r["memory_batch"]) if r["memory_batch"] else None,
        )
        for r in data["results"]
    ]
    return results, data["meta"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rates per setup, 20 s windows")
    parser.add_argument("--setups", default=",".join(SETUPS), help="which: a,b,c,d")
    parser.add_argument("--window", type=float, help="seconds of offered load per rate")
    parser.add_argument("--rates", help="offered runs/min, comma-separated, rising")
    parser.add_argument(
        "--memory-runs", type=int, default=0, help="then this many runs more, for memory"
    )
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        help="write the page again from saved results (var/<page>.json), several: one page",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/capacity.md"))
    args = parser.parse_args()
    rates = [float(x) for x in (args.rates or ("6,24" if args.quick else "6,12,24")).split(",")]
    window = args.window or (20.0 if args.quick else 30.0)
    if args.render:
        results, meta = load(args.render[0])
        for more in args.render[1:]:
            extra, extra_meta = load(more)
            results += extra
            meta["memory_runs"] = meta["memory_runs"] or extra_meta["memory_runs"]
    else:
        started = datetime.now(UTC)
        logging.getLogger("prefect.tasks").setLevel(logging.WARNING)  # a line per .delay()
        results = [
            measure(SETUPS[k], rates, window, args.memory_runs) for k in args.setups.split(",")
        ]
        meta = {
            "started": started.isoformat(),
            "cores": os.cpu_count() or 1,
            "quick": args.quick,
            "memory_runs": args.memory_runs,
            "window_s": window,
        }
        save(RESULTS / f"{args.out.stem}.json", results, meta)
        print(f"measured in {(datetime.now(UTC) - started).total_seconds() / 60:.1f} min")
    write_page(
        args.out,
        results,
        datetime.fromisoformat(meta["started"]),
        meta["cores"],
        meta["quick"],
        meta["memory_runs"],
        meta["window_s"],
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
