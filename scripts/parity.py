"""Parity: the plain CLI, Prefect, Dagster and Airflow on the same replay file, byte for byte.

    python -m scripts.parity [INPUT.csv] [--out out/parity]

Each path runs as its users run it (its own process, its own environment), into a fresh DuckDB,
and writes ``<out>/<path>.json`` (the output contract). Exit 1 with a readable diff on mismatch.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT

VENV = Path(sys.executable).parent
AIRFLOW_PY = PROJECT_ROOT / "airflow_port" / ".venv" / "bin" / "python"


def commands(csv: Path, out: Path, name: str) -> list[tuple[list[str], Path]]:
    """The commands of one path, each with its working directory."""
    db, js = out / f"{name}.duckdb", out / f"{name}.json"
    export = ([str(VENV / "btc"), "export", "--db", str(db), "--out", str(js)], PROJECT_ROOT)
    if name == "plain":
        run = [
            str(VENV / "btc"),
            "run",
            "--replay-file",
            str(csv),
            "--db",
            str(db),
            "--notify",
            "none",
        ]
        return [(run, PROJECT_ROOT), export]
    if name == "prefect":
        # Run from the output folder: a project-folder .env (make up) would point Prefect at
        # the demo server instead of this run's own ephemeral one.
        flow = PROJECT_ROOT / "flows" / "btc.py"
        return [([str(VENV / "python"), str(flow)], out), export]
    if name == "dagster":
        return [
            (
                [str(VENV / "python"), "-m", "dagster_port.parity", str(csv), str(db), str(js)],
                PROJECT_ROOT,
            )
        ]
    if name == "airflow":
        home = out / "airflow-home"
        args = [
            "-m",
            "btc_airflow.parity",
            "run",
            "--replay-file",
            str(csv),
            "--db",
            str(db),
            "--out",
            str(js),
        ]
        return [([str(AIRFLOW_PY), *args, "--home", str(home)], PROJECT_ROOT / "airflow_port")]
    raise ValueError(name)


PATHS = ("plain", "prefect", "dagster", "airflow")
PARITY_PREFECT_HOME = PROJECT_ROOT / "var" / "parity-prefect-home"  # kept: migrations run once


def environment(csv: Path, out: Path, name: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BTC_", "PREFECT_", "DAGSTER_", "AIRFLOW"))
    }
    env.update(
        BTC_SOURCE="replay",
        BTC_REPLAY_FILE=str(csv),
        BTC_DB_PATH=str(out / f"{name}.duckdb"),
        BTC_NOTIFY="none",
        PREFECT_HOME=str(PARITY_PREFECT_HOME),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",  # first start migrates the DB
    )
    return env


def run_path(csv: Path, out: Path, name: str) -> float:
    """Run one path; return its wall time in seconds."""
    PARITY_PREFECT_HOME.mkdir(parents=True, exist_ok=True)  # its SQLite file needs the folder
    started = time.perf_counter()
    for cmd, cwd in commands(csv, out, name):
        result = subprocess.run(
            cmd, cwd=cwd, env=environment(csv, out, name), capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise SystemExit(f"parity: {name} failed ({' '.join(cmd[:3])} ...):\n{tail}")
    return time.perf_counter() - started


def compare(out: Path, names: tuple[str, ...]) -> list[str]:
    """Paths whose JSON differs from plain.json, with a diff printed for each."""
    reference = (out / "plain.json").read_text()
    bad = []
    for name in names[1:]:
        text = (out / f"{name}.json").read_text()
        if text != reference:
            bad.append(name)
            diff = difflib.unified_diff(
                reference.splitlines(),
                text.splitlines(),
                "plain.json",
                f"{name}.json",
                lineterm="",
                n=2,
            )
            print("\n".join(list(diff)[:60]))
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.parity", description=__doc__.splitlines()[0]
    )
    parser.add_argument("input", nargs="?", type=Path, default=DEFAULT_REPLAY_FILE)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "parity")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS)
    )
    args = parser.parse_args(argv)
    csv, out = args.input.resolve(), args.out.resolve()
    names = tuple(n for n in args.paths.split(",") if n)
    if names[0] != "plain" or set(names) - set(PATHS):
        parser.error(f"--paths must start with plain and name only {', '.join(PATHS)}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in names:
        print(
            f"{name:8s} {run_path(csv, out, name):6.1f} s  -> {out / (name + '.json')}", flush=True
        )
    bad = compare(out, names)
    days = (out / "plain.json").read_text().count('"day"')
    if bad:
        print(f"parity FAILED on {csv.name}: {', '.join(bad)} differ from plain")
        return 1
    print(f"parity OK on {csv.name}: {len(names)} paths, {days} days, byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
