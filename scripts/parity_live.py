"""Live parity: every path against the local fake API with scripted faults, the same everywhere.

    python -m scripts.parity_live [--out out/parity-live] [--paths plain,prefect,dagster,airflow]

For each fault scenario each path runs its own hourly cycle (``btc run``, the Prefect flow, the
Dagster assets, the Airflow DAG) against a fresh fake CoinGecko/Coinbase and a fresh DuckDB, in
its own process and environment (Airflow's has its own venv); the paths run at the same time
(each has its own fake API, files and home). ``<out>/<path>.json`` holds, per
scenario, the export (the output contract), the requests each provider received, and what the
store recorded about the load (source, failover notes, counts): the retry and failover policies
(btc_core/policy.py) must give the same bytes on every path. Exit 1 with a diff otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from btc_core.fake_api import FakeApi
from btc_core.pipeline import store_for
from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT, Settings
from btc_core.transform import export
from scripts.parity import AIRFLOW_PY, PATHS, VENV, compare

# What the first provider (CoinGecko) answers, request after request; the failover (Coinbase)
# is healthy. Retry-After is 1 s in "rate-limited", so the wait is honoured visibly.
SCENARIOS: dict[str, list[str]] = {
    "flaky": ["500", "500"],  # retried twice, then served
    "rate-limited": ["429:1"],  # waits the Retry-After, then served
    "down": ["down"],  # retried BTC_HTTP_RETRIES times, then failover
    "malformed": ["truncated"],  # failover at once: a retry cannot cure it
}
ENV = {  # the same settings on every path; fast retries (the policy's numbers, scaled down)
    "BTC_SOURCE": "coingecko",
    "BTC_FAILOVER_SOURCE": "coinbase",
    "BTC_NOTIFY": "none",
    "BTC_HTTP_RETRIES": "3",
    "BTC_RETRY_BASE_S": "0.1",
    "BTC_READ_TIMEOUT_S": "2",
    "BTC_CHART": "none",
    "BTC_EXTRACT_CACHE_S": "0.001",  # every path asks the API (Prefect's cache would answer)
}


def run_once(path: str) -> Callable[[], object]:
    """One hourly cycle of ``path`` in this process, reading its settings from ``BTC_*``."""
    if path == "plain":
        from btc_core.pipeline import run_cycle

        return lambda: run_cycle(Settings.from_env())
    if path == "prefect":
        import asyncio

        from flows.btc import btc_pipeline

        return lambda: asyncio.run(btc_pipeline())
    if path == "dagster":
        from dagster_port.parity import materialize_live

        return materialize_live
    if path == "airflow":
        from btc_airflow.parity import airflow_cycle

        return airflow_cycle()
    raise ValueError(path)


def loads(settings: Settings) -> list[dict[str, object]]:
    """What the store recorded about each load, without its timestamps."""
    with store_for(settings).read() as con:
        rows = con.execute(
            """SELECT source, received, kept, rejected, duplicates, inserted, updated, notes
               FROM loads ORDER BY loaded_at"""
        ).fetchall()
    keys = ("source", "received", "kept", "rejected", "duplicates", "inserted", "updated")
    return [
        {**dict(zip(keys, row[:-1], strict=True)), "notes": row[-1].split("; ") if row[-1] else []}
        for row in rows
    ]


def scenarios(path: str, out: Path) -> dict[str, dict[str, object]]:
    """Every scenario on ``path`` in this process; what each gave."""
    cycle = run_once(path)
    results = {}
    for name, faults in SCENARIOS.items():
        db = out / f"{path}-{name}.duckdb"
        with FakeApi.start(DEFAULT_REPLAY_FILE, slow_s=5.0) as api:
            api.inject("coingecko", *faults)
            os.environ.update(
                ENV,
                BTC_DB_PATH=str(db),
                BTC_COINGECKO_URL=f"{api.url}/coingecko",
                BTC_COINBASE_URL=f"{api.url}/coinbase",
            )
            started = time.perf_counter()
            cycle()
            took = time.perf_counter() - started
            requests = {provider: api.hits(provider) for provider in ("coingecko", "coinbase")}
        settings = Settings.from_env()
        results[name] = {
            "export": json.loads(export(store_for(settings))),
            "requests": requests,
            "loads": loads(settings),
        }
        print(f"  {path:8s} {name:13s} {took:5.1f} s  requests {requests}", file=sys.stderr)
    return results


def child(path: str, out: Path) -> None:
    """Run every scenario of ``path`` and write ``<out>/<path>.json``."""
    text = json.dumps(scenarios(path, out), indent=2, sort_keys=True) + "\n"
    (out / f"{path}.json").write_text(text, encoding="utf-8")


def spawn(path: str, out: Path) -> None:
    """``path`` in its own process and environment (Airflow: its own venv)."""
    python = AIRFLOW_PY if path == "airflow" else VENV / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BTC_", "PREFECT_"))}
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        PREFECT_HOME=str(out / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    result = subprocess.run(
        [str(python), "-m", "scripts.parity_live", "--child", path, "--out", str(out)],
        cwd=out,  # not the project folder: its .env (make up) would point Prefect elsewhere
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"parity-live: {path} failed (exit {result.returncode}):\n{result.stdout}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.parity_live", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "parity-live")
    parser.add_argument("--paths", default=",".join(PATHS), help="plain first, then any of them")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.child:
        child(args.child, out)
        return 0
    names = tuple(n for n in args.paths.split(",") if n)
    if names[0] != "plain" or set(names) - set(PATHS):
        parser.error(f"--paths must start with plain and name only {', '.join(PATHS)}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*"):
        if stale.is_file():
            stale.unlink()
    with ThreadPoolExecutor(len(names)) as pool:  # independent processes: at once, not in turn
        list(pool.map(lambda name: spawn(name, out), names))
    bad = compare(out, names)
    if bad:
        print(f"parity-live FAILED: {', '.join(bad)} differ from plain")
        return 1
    print(
        f"parity-live OK: {len(names)} paths x {len(SCENARIOS)} fault scenarios "
        f"({', '.join(SCENARIOS)}), byte-identical exports, requests and failover notes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
