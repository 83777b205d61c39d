"""Measure Prefect, Dagster and Airflow on this pipeline and write docs/COMPARISON.md.

    uv run python -m scripts.comparison                    # measure (about 8 minutes), write the page
    uv run python -m scripts.comparison --from-json FILE   # write the page from saved measurements

Every number on the page comes from the run that wrote it: lines of code (one rule for every
port), locked and installed packages, install size and time (``uv sync --frozen`` into fresh
environments, warm uv cache), warm and cold run overhead over the plain core (the bench modules'
own measurements, and fresh processes running the parity commands), deployment trigger latency
(``bench.prefect_latency``), and SQLite versus PostgreSQL under a 100-task Prefect flow
(``bench.prefect_backends``). The machine is shared: every timing is a median of several runs.
The measurements are saved next to the page's inputs in ``var/comparison/measurements.json``.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tokenize
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "COMPARISON.md"
SAVED = PROJECT_ROOT / "var" / "comparison" / "measurements.json"
VENV_BIN = Path(sys.executable).parent
AIRFLOW_PY = PROJECT_ROOT / "airflow_port" / ".venv" / "bin" / "python"
PORTS = ("Prefect", "Dagster", "Airflow")

# Screenshots written by tests/e2e/test_browser.py (`make screenshots`), relative to docs/.
SCREENSHOTS = {
    "Prefect": [
        (
            "img/prefect-deployment.png",
            "the btc-hourly deployment, its schedule and a Completed run",
        ),
        ("img/prefect-run.png", "the run: task-run graph and logs"),
        ("img/prefect-artifacts.png", "the run's artifacts"),
        ("img/prefect-daily-averages.png", "the btc-daily-averages table artifact"),
    ],
    "Dagster": [
        ("img/dagster-lineage.png", "the asset lineage btc_price -> daily_avg, materialized")
    ],
    "Airflow": [("img/airflow-dag.png", "the btc_price DAG, its four tasks and a successful run")],
}

# --- what is counted -------------------------------------------------------------------------------

# One rule for every port: the files that exist only for that orchestrator and define or deploy
# the pipeline with it (Python, YAML, TOML), tests and docs excluded. Shell scripts, units and
# Docker files that start services are listed apart, not counted.
PORT_FILES = {
    "Prefect": ["flows/*.py", "deployments/*.py", "deployments/*.toml", "prefect.yaml"],
    "Dagster": ["dagster_port/*.py"],
    "Airflow": ["airflow_port/dags/*.py", "airflow_port/btc_airflow/*.py"],
}
AROUND_FILES = {
    "Prefect": ["workers/*", "infra/*"],
    "Dagster": [],
    "Airflow": ["airflow_port/scripts/*", "airflow_port/Makefile"],
}
TEST_FILES = {
    "Prefect": ["tests/prefect/*.py"],
    "Dagster": ["tests/dagster/*.py"],
    "Airflow": ["airflow_port/tests/*.py"],
}
CORE_FILES = ["btc_core/*.py"]

# What each needs running for scheduled runs, as this repository runs it (static, stated here).
SERVICES = {
    "plain": {
        "to try it": "nothing: `btc run`",
        "scheduled runs": "cron or a systemd timer calling `btc run`",
        "metadata store": "none (the DuckDB file is the state)",
        "processes": 0,
        "started here by": "-",
    },
    "Prefect": {
        "to try it": "nothing: `python flows/btc.py` starts a temporary local server by itself",
        "scheduled runs": "`prefect server start` (API, UI, scheduler and other loop services in "
        "one process) + one `prefect worker start --pool btc-process` per machine that runs flows "
        "(or Prefect Cloud instead of the server)",
        "metadata store": "SQLite file (default) or PostgreSQL (recommended, tested here)",
        "processes": 2,
        "started here by": "`make up` (`deployments/stack.py`)",
    },
    "Dagster": {
        "to try it": "nothing: `materialize([...])` in-process, ephemeral instance",
        "scheduled runs": "`dagster dev` locally (webserver + daemon + code server); in production "
        "`dagster-webserver`, `dagster-daemon` (schedules, sensors, automation) and a code "
        "location server",
        "metadata store": "SQLite files in DAGSTER_HOME (default) or PostgreSQL",
        "processes": 3,
        "started here by": "`make dagster` (`dagster dev`)",
    },
    "Airflow": {
        "to try it": "a migrated metadata DB (`airflow db migrate`), then `dag.test()`",
        "scheduled runs": "`airflow api-server` (UI, REST, execution API) + `airflow scheduler` "
        "(runs tasks with the LocalExecutor) + `airflow dag-processor` (+ `airflow triggerer` "
        "for deferrable operators, not used here)",
        "metadata store": "SQLite (development only) or PostgreSQL / MySQL",
        "processes": 3,
        "started here by": "`make airflow-ui` (`airflow_port/scripts/ui.sh`)",
    },
}


def files(patterns: list[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in PROJECT_ROOT.glob(pattern) if p.is_file())
    return sorted(p for p in found if "__pycache__" not in p.parts and p.suffix != ".pyc")


def python_code_lines(text: str) -> set[int]:
    """Line numbers holding Python code: no blank lines, comments or docstrings."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    skip |= {tokenize.ENDMARKER, tokenize.ENCODING}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines - docstrings


def code_lines(path: Path) -> int:
    """The counting rule: non-blank lines that are not comments (and, in Python, not docstrings)."""
    text = path.read_text(errors="replace")
    if path.suffix == ".py":
        return len(python_code_lines(text))
    return sum(1 for line in text.splitlines() if line.strip() and line.strip()[0] not in "#;")


def count(patterns: list[str]) -> dict[str, int]:
    return {str(p.relative_to(PROJECT_ROOT)): code_lines(p) for p in files(patterns)}


def lines_of_code() -> dict:
    return {
        "ports": {name: count(PORT_FILES[name]) for name in PORTS},
        "around": {name: count(AROUND_FILES[name]) for name in PORTS},
        "tests": {name: count(TEST_FILES[name]) for name in PORTS},
        "core": count(CORE_FILES),
    }


# --- the machine -----------------------------------------------------------------------------------


def machine() -> dict:
    cpu = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kib = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', release.read_text(), re.MULTILINE)
        os_name = f"{pretty.group(1) if pretty else ''}, Linux {platform.release()}".strip(", ")
    airflow_lock = tomllib.loads((PROJECT_ROOT / "airflow_port" / "uv.lock").read_text())
    airflow = next(p["version"] for p in airflow_lock["package"] if p["name"] == "apache-airflow")
    uv = subprocess.run(uv_cmd("--version"), capture_output=True, text=True).stdout.split()[1]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": os_name,
        "versions": {
            "prefect": metadata.version("prefect"),
            "dagster": metadata.version("dagster"),
            "apache-airflow": airflow,
            "duckdb": metadata.version("duckdb"),
            "uv": uv,
        },
    }


# --- dependencies, install size and time -----------------------------------------------------------


def uv_cmd(*args: str) -> list[str]:
    """uv as the Makefile calls it (``python3 -m uv``), or the ``uv`` on PATH."""
    for python in (shutil.which("python3"), sys.executable):
        if (
            python
            and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode
            == 0
        ):
            return [python, "-m", "uv", *args]
    return ["uv", *args]


# name -> (project folder, uv sync/export arguments choosing the dependency groups)
ENVIRONMENTS = {
    "core only (plain `btc`)": (".", ["--no-default-groups"]),
    "core + Prefect": (".", ["--no-default-groups", "--group", "prefect"]),
    "core + Dagster": (".", ["--no-default-groups", "--group", "dagster"]),
    "core + Airflow (airflow_port/)": ("airflow_port", ["--no-default-groups"]),
    "main dev environment (all groups)": (".", ["--all-groups"]),
}


def locked(project: str, groups: list[str]) -> int:
    """Packages the lock file pins for this selection of groups (every platform)."""
    out = subprocess.run(
        uv_cmd("export", "--frozen", "--no-hashes", "--no-emit-project", "-q", *groups),
        cwd=PROJECT_ROOT / project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if "==" in line and not line.startswith(("#", "-e")))


def size_mib(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def installed(venv: Path) -> int:
    """Distributions installed in a venv, the projects of this repository excluded."""
    site = next(venv.glob("lib/python3*/site-packages"))
    names = [p.name for p in site.glob("*.dist-info")]
    return sum(1 for n in names if not n.startswith(("btc_orchestration", "btc_airflow_port")))


def environments(repeats: int) -> dict:
    """Per environment: locked packages, and the median time of ``uv sync --frozen`` into a fresh
    venv (warm cache; never cleaned), its size and installed packages."""
    python = getattr(sys, "_base_executable", sys.executable)
    results = {}
    workdir = Path(tempfile.mkdtemp(prefix="envs-", dir=PROJECT_ROOT / "var" / "comparison"))
    try:
        for name, (project, groups) in ENVIRONMENTS.items():
            venv = workdir / "venv"
            times = []
            for _ in range(repeats):
                shutil.rmtree(venv, ignore_errors=True)
                started = time.perf_counter()
                subprocess.run(
                    uv_cmd("sync", "--frozen", "-q", "--python", python, *groups),
                    cwd=PROJECT_ROOT / project,
                    env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
                    check=True,
                )
                times.append(time.perf_counter() - started)
            results[name] = {
                "locked": locked(project, groups),
                "installed": installed(venv),
                "size_mib": size_mib(venv),
                "install_s": statistics.median(times),
                "install_runs_s": times,
            }
            shutil.rmtree(venv, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


# --- warm and cold run overhead --------------------------------------------------------------------


def run_bench(python: Path, module: str, labels: dict[str, str], *args: str) -> dict[str, float]:
    """Run a bench module and read its medians (ms) from its output lines."""
    result = subprocess.run(
        [str(python), "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    found = {}
    for key, label in labels.items():
        match = re.search(rf"^{re.escape(label)}\s*:\s*([\d.]+) ms", result.stdout, re.MULTILINE)
        if not match:
            raise RuntimeError(f"{module}: no '{label}' line in its output:\n{result.stdout}")
        found[key] = float(match.group(1))
    return found


def prefect_measurements(repeats: int, runs: int, cold_rounds: int) -> dict:
    """On a SQLite server, then on a PostgreSQL one (``bench.prefect_backends``): the 100-task
    flow and the warm pipeline; on PostgreSQL also the pipeline with the heartbeat off, and the
    cold runs of every path (the Prefect one pointed at that server)."""
    from bench import prefect_backends as pb

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="btc-comparison-") as tmp:
        workdir = Path(tmp)
        for backend in pb.BACKENDS:
            with pb.server(backend, workdir) as srv:
                results[backend] = {
                    "many_tasks": pb.many_tasks(srv, 100, runs),
                    "pipeline": pb.pipeline_warm(srv, repeats),
                }
                if backend == "postgres":
                    results[backend]["pipeline_no_heartbeat"] = pb.pipeline_warm(
                        srv, repeats, heartbeat=False
                    )
                    results["cold"] = cold_runs(workdir, cold_rounds, (srv.home, srv.api_url))
    return results


COLD_PATHS = ("plain", "prefect (server running)", "prefect (no server)", "dagster", "airflow")


def cold_runs(workdir: Path, rounds: int, server: tuple[Path, str]) -> dict:
    """Seconds of one cycle in a fresh process, per path, as parity runs it (``btc run``,
    ``python flows/btc.py``, ``python -m dagster_port.parity``, ``python -m btc_airflow.parity``),
    interleaved over ``rounds`` measured rounds after one warm-up round (Prefect's and Airflow's
    metadata databases are created then, as on any machine that ran them once). Each round also
    checks that the paths' DuckDB files export byte-identical JSON."""
    from btc_core.store import Store
    from btc_core.transform import export
    from scripts import parity

    home, api_url = server
    times: dict[str, list[float]] = {name: [] for name in COLD_PATHS}
    identical: list[bool] = []
    days = 0
    for i in range(rounds + 1):
        folder = workdir / f"cold{i}"
        folder.mkdir(parents=True)
        replay = folder / "replay.csv"  # a fresh copy: no cache hit from an earlier round
        shutil.copyfile(DEFAULT_REPLAY_FILE, replay)
        exports = set()
        for name in COLD_PATHS:
            path = name.split()[0]
            out = folder / re.sub(r"\W+", "-", name).strip("-")
            out.mkdir()
            cmd, cwd = parity.commands(replay, out, path)[0]
            env = parity.environment(replay, out, path)
            if name == "prefect (server running)":
                env.update(PREFECT_HOME=str(home), PREFECT_API_URL=api_url)
            elif name == "prefect (no server)":
                env["PREFECT_HOME"] = str(workdir / "prefect-home-no-server")
            elif path == "airflow":
                cmd = [*cmd[:-1], str(workdir / "airflow-home")]  # kept: migrated in round 0
            started = time.perf_counter()
            result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
            took = time.perf_counter() - started
            if result.returncode != 0:
                tail = (result.stdout + result.stderr)[-2000:]
                raise RuntimeError(f"cold run of {name} failed ({' '.join(cmd[:3])}):\n{tail}")
            text = export(Store(out / f"{path}.duckdb"))
            exports.add(text)
            days = text.count('"day"')
            if i:
                times[name].append(took)
        identical.append(len(exports) == 1)
    return {"times": times, "identical": identical, "days": days}


def orchestrator_benches(repeats: int) -> dict:
    """Warm medians (ms) of ``bench.dagster_overhead`` and ``bench.airflow_overhead``."""
    dagster = run_bench(
        VENV_BIN / "python",
        "bench.dagster_overhead",
        {"plain": "plain run_cycle", "run": "Dagster materialize"},
        "--repeats",
        str(repeats),
    )
    airflow = run_bench(
        AIRFLOW_PY,
        "bench.airflow_overhead",
        {"plain": "plain run_cycle", "run": "Airflow dag.test"},
        "--repeats",
        str(repeats),
    )
    return {
        "repeats": repeats,
        "Dagster": {"plain_ms": dagster["plain"], "run_ms": dagster["run"]},
        "Airflow": {"plain_ms": airflow["plain"], "run_ms": airflow["run"]},
    }


# --- Prefect latency and backends ------------------------------------------------------------------


def latency(runs: int) -> dict[str, list[float]]:
    from bench import prefect_latency

    with tempfile.TemporaryDirectory(prefix="btc-latency-") as tmp:
        return prefect_latency.measure(runs, Path(tmp))


# --- measuring everything --------------------------------------------------------------------------


def measure(quick: bool) -> dict:
    repeats, rounds, runs = (5, 1, 1) if quick else (7, 3, 3)
    # Cold starts as on a user's machine: Python may cache bytecode (.pyc). Some sandboxes set
    # PYTHONDONTWRITEBYTECODE, which makes every fresh process compile Prefect, Dagster or
    # Airflow from source again (seconds); the warm-up rounds write the caches.
    results: dict = {"quick": quick, "seconds": {}}
    results["bytecode_was_disabled"] = bool(os.environ.pop("PYTHONDONTWRITEBYTECODE", ""))
    steps: dict[str, Callable[[], object]] = {
        "machine": machine,
        "loc": lines_of_code,
        "environments": lambda: environments(1 if quick else 3),
        "benches": lambda: orchestrator_benches(repeats),
        "prefect": lambda: prefect_measurements(repeats, runs, rounds),
        "latency": lambda: latency(runs),
    }
    for name, step in steps.items():
        started = time.perf_counter()
        print(f"measuring {name} ...", flush=True)
        results[name] = step()
        results["seconds"][name] = round(time.perf_counter() - started, 1)
        print(f"  {name}: {results['seconds'][name]:.0f} s", flush=True)
    results["pngs"] = sorted(
        str(p.relative_to(PROJECT_ROOT / "docs")) for p in (PROJECT_ROOT / "docs").glob("img/*.png")
    )
    results["prefect_oss_assets_api"] = any(
        Path(metadata.distribution("prefect").locate_file("prefect/server/api")).glob("*asset*")
    )
    return results


# --- the page --------------------------------------------------------------------------------------


def sqlite_note(over: dict[str, float]) -> str:
    """Why Prefect on SQLite costs what it does, from the numbers of this run."""
    if over["Prefect (SQLite)"] - over["Prefect"] > 500:
        return "the server's locked database makes the client wait about 2 s"
    return "about the same as on PostgreSQL for one run at a time"


def fmt_ms(value: float, sign: bool = False) -> str:
    return f"{value:+,.0f} ms" if sign else f"{value:,.0f} ms"


def fmt_s(value: float) -> str:
    return f"{value:.1f} s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "n/a"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def warm_runs(m: dict) -> dict[str, dict]:
    """Warm medians (plain_ms, run_ms) per row of the warm table."""
    pf = m["prefect"]
    return {
        "Prefect (PostgreSQL server)": pf["postgres"]["pipeline"],
        "Prefect, heartbeat off (PostgreSQL)": pf["postgres"]["pipeline_no_heartbeat"],
        "Prefect (SQLite server)": pf["sqlite"]["pipeline"],
        "Dagster": m["benches"]["Dagster"],
        "Airflow": m["benches"]["Airflow"],
    }


def facts(m: dict) -> dict:
    """The numbers the page's text uses, computed once."""
    warm = warm_runs(m)
    by_row = {name: w["run_ms"] - w["plain_ms"] for name, w in warm.items()}
    over = {
        "Prefect": by_row["Prefect (PostgreSQL server)"],
        "Prefect, heartbeat off": by_row["Prefect, heartbeat off (PostgreSQL)"],
        "Prefect (SQLite)": by_row["Prefect (SQLite server)"],
        "Dagster": by_row["Dagster"],
        "Airflow": by_row["Airflow"],
    }
    cold = {name: median(v) for name, v in m["prefect"]["cold"]["times"].items()}
    lat = {label: median(v) for label, v in m["latency"].items()}
    lat_default, lat_tuned = lat.values()
    loc = {name: sum(m["loc"]["ports"][name].values()) for name in PORTS}
    envs = list(m["environments"].values())
    ranked = sorted(PORTS, key=lambda n: over[n])
    return {
        "over": over,
        "cold": cold,
        "lat_default": lat_default,
        "lat_tuned": lat_tuned,
        "loc": loc,
        "core_loc": sum(m["loc"]["core"].values()),
        "env": dict(zip(("plain", *PORTS, "dev"), envs, strict=True)),
        "heartbeat_ms": over["Prefect"] - over["Prefect, heartbeat off"],
        "cheapest": ranked[0],
        "dearest": ranked[-1],
        "plain_warm_ms": statistics.median(w["plain_ms"] for w in warm.values()),
    }


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summary(m: dict, f: dict) -> str:
    over, cold, env, loc = f["over"], f["cold"], f["env"], f["loc"]
    plain_warm = f["plain_warm_ms"]
    rows = [
        [
            "orchestrator-specific code (lines)",
            f"core: {f['core_loc']:,} (shared)",
            *(f"{loc[n]:,}" for n in PORTS),
        ],
        [
            "packages installed / install size",
            *(f"{env[n]['installed']} / {env[n]['size_mib']:,.0f} MiB" for n in ("plain", *PORTS)),
        ],
        [
            "services for scheduled runs",
            "cron",
            "server + worker",
            "webserver + daemon + code server",
            "api-server + scheduler + dag-processor",
        ],
        [
            "warm run, one cycle (median)",
            f"{plain_warm:,.0f} ms",
            *(fmt_ms(over[n], sign=True) for n in PORTS),
        ],
        [
            "cold run, fresh process (median)",
            fmt_s(cold["plain"]),
            f"{fmt_s(cold['prefect (server running)'])} ({fmt_s(cold['prefect (no server)'])} with no server)",
            fmt_s(cold["dagster"]),
            fmt_s(cold["airflow"]),
        ],
        [
            "deployment trigger -> Completed",
            "-",
            f"{fmt_s(f['lat_default'])} (10 s polling), {fmt_s(f['lat_tuned'])} (1 s)",
            "not measured",
            "not measured",
        ],
        [
            "asset lineage in the UI",
            "-",
            "no (task graph per run)",
            "yes (asset graph)",
            "no (this port declares no assets)",
        ],
        [
            "schedules used here",
            "cron",
            "cron, interval, event trigger",
            "cron, sensor (polls), declarative automation",
            "cron",
        ],
    ]
    parity = m["prefect"]["cold"]
    heartbeat_clause = (
        f"({fmt_ms(f['heartbeat_ms'])} of it is the flow-run heartbeat thread, joined at exit)"
        if f["heartbeat_ms"] >= 100
        else "(on a PostgreSQL server)"
    )
    same = "identical" if all(parity["identical"]) else "NOT identical"
    return f"""## Summary

The same pipeline (extract -> DuckDB -> daily average -> notify) as plain Python, a Prefect flow,
Dagster assets and an Airflow DAG; the four outputs were byte-{same} in every measured round
({parity["days"]} days of the replay slice; `make parity` checks any file). Per run, Prefect costs
{"the most" if f["dearest"] == "Prefect" else "more than the plain core"}: {fmt_ms(over["Prefect"], sign=True)} warm over the plain core's {plain_warm:,.0f} ms
{heartbeat_clause}, against
{fmt_ms(over["Dagster"], sign=True)} for Dagster's in-process `materialize` and
{fmt_ms(over["Airflow"], sign=True)} for Airflow's `dag.test()`. On the default SQLite server
Prefect's run costs {fmt_ms(over["Prefect (SQLite)"], sign=True)} ({sqlite_note(over)}). A deployment run through a worker
takes {fmt_s(f["lat_default"])} from trigger to Completed with default polling. In exchange
Prefect has the widest scheduling (cron, interval, event triggers), the finest retries and
caching, and hybrid execution where data and secrets stay on your machines. Dagster is the one with
asset lineage, checks and freshness built in; Airflow needs its own environment and three services.

{table(["", "plain core", *PORTS], rows)}

Medians on a shared {m["machine"]["cpus"]}-CPU machine: compare ratios, not milliseconds. Details
and method below."""


def screenshots() -> str:
    """What each UI shows after one run, as the browser test saw it (fails if an image is gone)."""
    blocks = [
        "### What each UI shows",
        "Screenshots taken by `tests/e2e/test_browser.py` in headless Chromium after one run of "
        "each port on the replay data (`make screenshots` retakes them).",
    ]
    for port, shots in SCREENSHOTS.items():
        for path, caption in shots:
            assert (PAGE.parent / path).is_file(), f"docs/{path} is missing: run make screenshots"
            blocks.append(f"**{port}**: {caption}.\n\n![{port}: {caption}]({path})")
    return "\n\n".join(blocks)


def page(m: dict) -> str:
    f = facts(m)
    mach = m["machine"]
    v = mach["versions"]
    total_min = sum(m["seconds"].values()) / 60
    over, cold = f["over"], f["cold"]
    warm = warm_runs(m)
    reps = m["benches"]["repeats"]
    rounds = len(m["prefect"]["cold"]["times"]["plain"])
    runs_lat = len(next(iter(m["latency"].values())))
    sq, pg = m["prefect"]["sqlite"], m["prefect"]["postgres"]

    def files_table(kind: str) -> str:
        rows = []
        for name in PORTS:
            counted = m["loc"][kind][name]
            listing = ", ".join(f"`{path}` {n}" for path, n in counted.items()) or "-"
            rows.append([name, f"{sum(counted.values()):,}", str(len(counted)), listing])
        return table(["port", "lines", "files", "per file"], rows)

    env_rows = [
        [
            name,
            str(e["locked"]),
            str(e["installed"]),
            f"{e['size_mib']:,.0f} MiB",
            fmt_s(e["install_s"]) if e["install_s"] >= 1 else f"{e['install_s']:.2f} s",
        ]
        for name, e in m["environments"].items()
    ]
    warm_rows = [
        [
            name,
            fmt_ms(w["plain_ms"]),
            fmt_ms(w["run_ms"]),
            fmt_ms(w["run_ms"] - w["plain_ms"], sign=True),
            ratio(w["run_ms"], w["plain_ms"]),
        ]
        for name, w in warm.items()
    ]
    commands = {
        "plain": "`btc run --replay-file F --db D --notify none`",
        "prefect (server running)": "`python flows/btc.py`, PREFECT_API_URL set (PostgreSQL server); a worker does the same per run, plus its own start-up",
        "prefect (no server)": "`python flows/btc.py` with no PREFECT_API_URL: Prefect starts a temporary server, then stops it",
        "dagster": "`python -m dagster_port.parity F D J` (`materialize` of both assets and the 3 checks, then export)",
        "airflow": "`python -m btc_airflow.parity run ...` (metadata DB check, DAG parse, `dag.test()`, export)",
    }
    cold_rows = [
        [
            name,
            fmt_s(cold[name]),
            "-" if name == "plain" else f"{cold[name] - cold['plain']:+.1f} s",
            commands[name],
        ]
        for name in COLD_PATHS
    ]
    service_rows = [
        [name, s["to try it"], s["scheduled runs"], s["metadata store"], s["started here by"]]
        for name, s in SERVICES.items()
    ]
    lat_rows = [
        [label, fmt_s(median(values)), ", ".join(f"{x:.1f}" for x in values)]
        for label, values in m["latency"].items()
    ]

    def backend_rows(backend: str, r: dict) -> list[list[str]]:
        mt, pl = r["many_tasks"], r["pipeline"]
        return [
            [
                backend,
                f"{mt['tasks']}-task flow",
                fmt_s(mt["flow_median_s"]),
                "runs (s): "
                + ", ".join(f"{x:.1f}" for x in mt["flow_s"])
                + f"; all recorded {fmt_s(mt['lag_median_s'])} later; "
                f"{mt['task_runs_not_completed']} task runs and {mt['flows_not_completed']} "
                "flows not Completed",
                str(mt["retried_requests"]),
            ],
            [
                backend,
                "`btc_pipeline`, warm",
                fmt_ms(pl["run_ms"]),
                "runs (ms): " + ", ".join(f"{x:,.0f}" for x in pl["runs_ms"]),
                str(pl["retried_requests"]),
            ],
        ]

    ratio_tasks = ratio(pg["many_tasks"]["flow_median_s"], sq["many_tasks"]["flow_median_s"])
    sq_503 = sq["many_tasks"]["retried_requests"] + sq["pipeline"]["retried_requests"]
    pg_503 = pg["many_tasks"]["retried_requests"] + pg["pipeline"]["retried_requests"]
    not_completed = sum(
        r["many_tasks"]["task_runs_not_completed"] + r["many_tasks"]["flows_not_completed"]
        for r in (sq, pg)
    )
    largest_port = (
        "the largest" if f["loc"]["Prefect"] == max(f["loc"].values()) else "not the smallest"
    )
    backend_verdict = (
        f"The 100-task flow took {fmt_s(sq['many_tasks']['flow_median_s'])} on SQLite and "
        f"{fmt_s(pg['many_tasks']['flow_median_s'])} on PostgreSQL (ratio {ratio_tasks}; on a "
        "shared machine, read it with the spread of the runs). "
        + (
            "Every task and flow run completed on both backends. "
            if not_completed == 0
            else f"{not_completed} task or flow runs did not complete (see the table). "
        )
        + (
            f"The SQLite server answered {sq_503} requests with 503 because its database was "
            f"locked (PostgreSQL: {pg_503}); the client retries those after about 2 s, silently. "
            f"That is the SQLite tax on the real flow: its `load` task takes the writer "
            f"concurrency lease (a write on the server) while the server writes the flow's events "
            f"and logs, and a locked database turns into a 2 s pause. Median of `btc_pipeline` "
            f"warm: {fmt_ms(sq['pipeline']['run_ms'])} on SQLite, "
            f"{fmt_ms(pg['pipeline']['run_ms'])} on PostgreSQL."
            if sq_503 > pg_503
            else f"Requests answered 503 (database busy): SQLite {sq_503}, PostgreSQL {pg_503}."
        )
    )
    sizes = {n: f["env"][n]["size_mib"] for n in PORTS}
    heaviest_text = (
        f"the largest install here ({sizes['Airflow']:,.0f} MiB)"
        if sizes["Airflow"] == max(sizes.values())
        else f"a {sizes['Airflow']:,.0f} MiB install"
    )
    pngs = m.get("pngs") or []
    ui_images = (
        "\n\n" + "\n".join(f"![{Path(p).stem}]({p})" for p in pngs)
        if pngs
        else " No screenshots yet: `docs/img/` is empty; the browser-test issue adds them "
        "(headless Chromium against the three UIs) and this page links them when regenerated."
    )
    assets_api = (
        "has an assets API"
        if m.get("prefect_oss_assets_api")
        else "has no assets API or page (no `prefect/server/api/*asset*` in the installed package)"
    )
    bytecode = (
        " This machine sets `PYTHONDONTWRITEBYTECODE`; the script unset it for its child processes, "
        "so cold runs use bytecode caches written in the warm-up round, as on a user's machine."
        if m.get("bytecode_was_disabled")
        else ""
    )
    return f"""# Prefect, Dagster and Airflow on one pipeline: a measured comparison

> **Generated** by `scripts/comparison.py` on {mach["date"]}; do not edit by hand. Regenerate with
> `uv run python -m scripts.comparison` (`make comparison`), about {total_min:.0f} minutes.
> Machine: {mach["cpus"]} CPUs ({mach["cpu_model"]}), {mach["memory_gib"]} GiB memory, Python
> {mach["python"]}, {mach["os"]}. Prefect {v["prefect"]}, Dagster {v["dagster"]}, Airflow
> {v["apache-airflow"]}, DuckDB {v["duckdb"]}, uv {v["uv"]}. The machine is shared with other work:
> every timing is a **median** (warm: {reps} runs after a warm-up; cold: {rounds} rounds after a
> warm-up round; latency: {runs_lat} runs per setting), interleaved with its baseline in the same
> run. Trust the ratios more than the milliseconds.

{summary(m, f)}

## 1. Code per port

Counting rule, the same for every port: non-blank lines that are not comments and, in Python, not
docstrings, in the files that exist only for that orchestrator and define or deploy the pipeline
with it (Prefect: `flows/`, `deployments/`, `prefect.yaml`; Dagster: `dagster_port/`; Airflow:
`airflow_port/dags/`, `airflow_port/btc_airflow/`). Tests and docs are not counted. The business
logic is in `btc_core/`, shared by all: {f["core_loc"]:,} lines in {len(m["loc"]["core"])} files.

{files_table("ports")}

Prefect's count includes `deployments/setup.py` (work pools, Secret blocks, a concurrency limit
and automations, created idempotently) and `deployments/stack.py` (starts and stops a local server
and workers by PID); Dagster and Airflow get the equivalent of the latter from `dagster dev` and
`airflow_port/scripts/ui.sh`. Around the ports, not counted above (shell, systemd, Docker):

{files_table("around")}

Tests of each port (same rule):

{files_table("tests")}

## 2. Dependencies, install size and time

Per environment: packages pinned by the lock file for that selection of dependency groups (every
platform), packages actually installed here, the size of the venv, and the median time of
`uv sync --frozen` into a fresh venv (`UV_PROJECT_ENVIRONMENT`, warm uv cache, which is never
cleaned: a first install downloads the same wheels and takes longer). Prefect and Dagster share the
main lock file (`uv.lock`); Airflow 3 cannot share an environment with Prefect 3 (their FastAPI
pins conflict) and has its own (`airflow_port/uv.lock`).

{table(["environment", "locked", "installed", "size", "install time"], env_rows)}

## 3. Services each needs

Stated, not measured (from how this repository runs each one):

{table(["", "to try it", "scheduled runs", "metadata store", "started here by"], service_rows)}

{screenshots()}

## 4. Run overhead over the plain core

**Warm**: one full cycle (extract the 2,208-row replay slice, load into a fresh DuckDB, daily
average, no notification) in a process that has run it before, interleaved with the plain
`run_cycle` in the same process. Dagster: `bench.dagster_overhead` (`materialize` of both assets,
in-process executor, ephemeral instance); Airflow: `bench.airflow_overhead` (`dag.test()`, in its
own environment); Prefect: `bench.prefect_backends` runs `btc_pipeline()` against a running
self-hosted server, with its artifacts, concurrency lease and logs sent to the server as in a
deployment, on a fresh copy of the file each time so extract's cache misses; on PostgreSQL (the
backend for real use) and on SQLite (the default of `prefect server start`, see section 6). The
heartbeat row switches the flow-run heartbeat thread off in code, only to show its share: the
thread sleeps in 1 s slices and is joined at the end of every flow run, and
`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` cannot switch it off (minimum 30 s): crash detection costs
this much per run.

{table(["path", "plain (same run)", "orchestrated", "overhead", "ratio"], warm_rows)}

**Cold**: the same cycle in a fresh process, as `make parity` runs each path, after a warm-up
round.{bytecode}

{table(["path", "median", "over plain", "command"], cold_rows)}

## 5. Deployment trigger latency (Prefect)

`bench.prefect_latency`: a run of the `btc-hourly` deployment created through the API, picked up
by a process worker that starts a fresh process for it, until the server shows Completed.

{table(["worker polling", "median", "runs (s)"], lat_rows)}

The bench's server is on SQLite (what `make demo` starts), so a run can include the 2 s pause of
section 6. Most of it is waiting for the worker's next poll ({"`PREFECT_WORKER_QUERY_SECONDS`"}, default 10 s;
`BTC_WORKER_POLL_S` here), then the process start and imports, then the flow. The equivalent for
Dagster (a run requested by a sensor or the UI, launched by the daemon) and for Airflow (the
scheduler's loop queuing a triggered DAG run) was not measured here.

## 6. SQLite versus PostgreSQL for a 100-task Prefect flow

`bench.prefect_backends`: one server per backend (PostgreSQL 127.0.0.1:5432, a database created
for the run and dropped after), the same flow in a fresh process each time: 100 tasks mapped on
Prefect's thread pool (no limit on threads, so all 100 are in flight), each computing the rounded
mean of a slice of the replay prices with `btc_core`. "Recorded" is how long after the flow
returned the server showed all 100 task runs Completed (task states reach the server as events,
written in the background). Then the real flow, `btc_pipeline`, warm, as in section 4. The
servers log every request they answer with 503 "retry" because the database was busy
(`PREFECT_API_LOG_RETRYABLE_ERRORS=true`): the last column counts them. Medians of
{sq["many_tasks"]["runs"]} runs of the 100-task flow and {sq["pipeline"]["repeats"]} of the
pipeline, after a warm-up run.

{table(["backend", "flow", "median", "detail", "503 answers"], backend_rows("SQLite", sq) + backend_rows("PostgreSQL", pg))}

{backend_verdict} Use PostgreSQL for anything beyond one person's laptop (the Prefect tests run on
both).

## 7. Judgement, point by point

**Setup complexity.** Prefect needs the least to start (`python flows/btc.py` runs with no
server: it starts a temporary one by itself, which makes that cold run
{fmt_s(cold["prefect (no server)"])}) and has the most moving parts to run properly in hybrid mode:
a server (or Cloud) with PostgreSQL, work pools, a worker per machine, `prefect deploy`, plus
blocks, limits and automations, which is why its port is {largest_port} ({f["loc"]["Prefect"]:,} lines against {f["loc"]["Dagster"]:,} for Dagster and
{f["loc"]["Airflow"]:,} for Airflow). Dagster's `dagster dev` starts everything locally in one
command; production adds a daemon and a code server. Airflow needs its own environment
({f["env"]["Airflow"]["installed"]} packages, {f["env"]["Airflow"]["size_mib"]:,.0f} MiB), a
migrated metadata database even for `dag.test()`, and three services for scheduled runs.

**UI quality.** Prefect: runs and their task graph, logs, the artifacts this flow publishes (a
run summary, a table of daily averages, backfill progress), deployments, work pools with worker
health, automations and an event feed: the best view of *operations* (what ran where, what is
late, which worker is down). Dagster: the asset graph with each asset's materializations, metadata,
check results and freshness: the best view of *data*. Airflow: the grid of DAG runs by task
instance, logs and clear/re-run: familiar to many teams, task-centred.{ui_images}

**Lineage.** Dagster has it by construction: `btc_price -> daily_avg` is declared with `deps`,
with checks and freshness on the assets. Prefect loses here: the flow has a task graph per run,
not an asset graph; Prefect 3 can record assets with `@materialize` (not used in this port), but
the self-hosted server {prefect_version(m)} {assets_api}: the asset graph is a Prefect Cloud
feature. Airflow 3 has assets (inlets/outlets, asset-triggered DAGs); this port declares none.

**Scheduling kinds.** Prefect: cron (`btc-hourly`), interval (`btc-interval`, 15 min) and event
triggers (`btc-on-event` runs on a custom event; automations react to run states) are all
deployment options in `prefect.yaml`. Dagster: cron schedules, sensors (polled every 30 s here:
`replay_file_sensor`) and declarative automation (`daily_avg` follows `btc_price`); no interval
schedule type. Airflow: cron or presets (`@hourly` here), timedelta intervals, asset-triggered
runs and, in Airflow 3, event-driven scheduling through asset watchers; this port uses cron only.

**Secrets.** Prefect: Secret blocks are convenient, but the server stores them encrypted with a key
it also holds, so whoever holds its database can read them; the default here
(`BTC_SECRETS_FROM=env`) keeps secrets in the worker's environment only, which the hybrid model
makes natural. Dagster: `EnvVar` resources (the UI shows the variable's name, never its value);
no secret store of its own. Airflow: Connections and Variables (Fernet-encrypted in the metadata
database, or a secrets backend such as Vault), masked in task logs.

**Retries and caching.** Prefect is the most expressive: per-task retries with a condition (only
what `btc_core.errors.is_retryable` accepts), backoff and jitter, timeouts, and a cache policy
(`INPUTS + TASK_SOURCE`, expiring after 5 min) so a retried flow does not fetch again. Airflow:
per-task retries with exponential backoff and `AirflowFailException` to fail fast; no result
cache (XCom carries the data between tasks). Dagster: `RetryPolicy` exists but this port keeps
retries in `btc_core` (one layer, no multiplied attempts); instead of a cache it knows which assets
are up to date and does not recompute them.

**Local development loop.** The cheapest warm run here is {f["cheapest"]}'s. Dagster:
`materialize([...])` in a test costs {fmt_ms(over["Dagster"], sign=True)} warm, `dagster dev` reloads code. Prefect flows are plain
functions (call `btc_pipeline()` in a test) at {fmt_ms(over["Prefect"], sign=True)} per run, and
{fmt_s(cold["prefect (no server)"])} for a fresh `python flows/btc.py` without a server; a
deployment adds the worker's polling ({fmt_s(f["lat_tuned"])} to {fmt_s(f["lat_default"])} per
triggered run). Airflow's `dag.test()` is {fmt_ms(over["Airflow"], sign=True)} warm, but lives in
its own environment and needs `airflow db migrate` first.

**Where Prefect loses, plainly.** Per-run overhead: {fmt_ms(over["Prefect"], sign=True)} warm,
{ratio(over["Prefect"], over["Dagster"])} Dagster's, of which {fmt_ms(f["heartbeat_ms"])} is the
heartbeat thread that crash detection needs; {fmt_ms(over["Prefect (SQLite)"], sign=True)} on the
default SQLite server ({sqlite_note(over)}); a fresh process per
deployment run ({fmt_s(cold["prefect (server running)"])} cold against Dagster's
{fmt_s(cold["dagster"])}), picked up only at the worker's next poll ({fmt_s(f["lat_tuned"])} to
{fmt_s(f["lat_default"])} from trigger to Completed). No asset lineage on the self-hosted server,
and {"the most" if f["loc"]["Prefect"] == max(f["loc"].values()) else "more"} code around the
pipeline for a proper hybrid setup.

## 8. When to choose each

- **Prefect** when the work is Python that should stay Python (dynamic mapping over days, runtime
  failover between sources), when runs must happen on machines you control while a server or
  Prefect Cloud only schedules and observes (hybrid: data and secrets never leave the workers),
  and when schedules mix cron, intervals and events. Accept {fmt_ms(over["Prefect"], sign=True)} per run and a few
  seconds of trigger latency.
- **Dagster** when the things you care about are tables and their freshness: lineage, asset
  checks, partitions and backfills, declarative "keep this up to date". {"The lowest overhead here" if f["cheapest"] == "Dagster" else "Low overhead"} ({fmt_ms(over["Dagster"], sign=True)} warm),
  at the price of learning its concepts (assets, resources, definitions, automation conditions).
- **Airflow** when a team or platform already runs Airflow (or a managed Airflow), or needs its
  operator ecosystem: {heaviest_text}, its own environment and three services, for the most
  familiar operations model.
- **None of them** for one job on one machine: `btc run` from cron does the same work in
  {fmt_ms(statistics.median(w["plain_ms"] for w in warm.values()))}, with retries, failover and
  validation already in `btc_core`.

## Reproduce

```sh
uv run python -m scripts.comparison        # everything above, then rewrites this page
uv run python -m bench.prefect_latency     # one benchmark alone (also bench.dagster_overhead,
uv run python -m bench.prefect_backends    #   bench.ingest; airflow_port/.venv/bin/python -m bench.airflow_overhead)
make parity INPUT=path/to/file.csv         # byte-for-byte parity of the four paths on any file
```

Measuring took {total_min:.1f} min ({", ".join(f"{k} {v:.0f} s" for k, v in m["seconds"].items())}).
"""


def prefect_version(m: dict) -> str:
    return m["machine"]["versions"]["prefect"]


def reflow(markdown: str, width: int = 100) -> str:
    """Wrap the page's paragraphs, list items and quotes at ``width``; tables, headings, code
    and images stay as they are."""

    def fill(text: str, first: str = "", rest: str = "") -> str:
        return textwrap.fill(
            text,
            width,
            initial_indent=first,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )

    blocks = []
    for block in markdown.strip().split("\n\n"):
        lines = block.split("\n")
        if lines[0].startswith(("|", "```", "#", "![")):
            blocks.append(block)
        elif lines[0].startswith(">"):
            blocks.append(fill(" ".join(line[1:].strip() for line in lines), "> ", "> "))
        elif lines[0].startswith("- "):
            items: list[list[str]] = []
            for line in lines:
                if line.startswith("- "):
                    items.append([])
                items[-1].append(line.strip().removeprefix("- "))
            blocks.append("\n".join(fill(" ".join(item), "- ", "  ") for item in items))
        else:
            blocks.append(fill(" ".join(line.strip() for line in lines)))
    return "\n\n".join(blocks) + "\n"


def render(m: dict) -> str:
    return reflow(page(m))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.comparison", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=PAGE)
    parser.add_argument("--from-json", type=Path, help="write the page from saved measurements")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args(argv)
    if args.from_json:
        measured = json.loads(args.from_json.read_text())
    else:
        SAVED.parent.mkdir(parents=True, exist_ok=True)
        measured = measure(args.quick)
        SAVED.write_text(json.dumps(measured, indent=2))
        print(f"measurements saved to {SAVED.relative_to(PROJECT_ROOT)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(measured))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
