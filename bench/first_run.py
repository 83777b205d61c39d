"""The class's first exercise, ``python flows/btc.py`` with no server, against Prefect's own.

    uv run python -m bench.first_run [--repeats 3]

With no ``PREFECT_API_URL`` Prefect starts a temporary server of its own for the run and stops it
at exit. Both sides run that way, each in a fresh process with a fresh ``PREFECT_HOME`` (so
neither reuses a warm database), alternately, after one warm-up round (bytecode and disk caches):

- ``python flows/btc.py``: the pipeline on the replay slice, into a fresh DuckDB file;
- ``python empty_flow.py``: one async ``@flow`` that does nothing, run the same way (Prefect's
  floor).

Beside them, the imports alone in fresh processes (``import flows.btc`` against
``from prefect import flow``), so the difference splits into what importing costs and what the
run costs. Medians; the ratio is what counts.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import timed
from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT
from deployments.processes import prefect_env, run_checked

# Async, as btc_pipeline is: Prefect's sync engine also joins its heartbeat thread at exit.
EMPTY_FLOW = """import asyncio

from prefect import flow


@flow
async def empty() -> None:
    pass


if __name__ == "__main__":
    asyncio.run(empty())
"""
STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
IMPORTS = {
    "import flows.btc": "import flows.btc",
    "import prefect": "from prefect import flow",
}


def first_runs(repeats: int) -> dict[str, list[float]]:
    """Milliseconds of each side and of each import, interleaved fresh processes."""
    times: dict[str, list[float]] = {k: [] for k in ("btc", "empty", *IMPORTS)}
    with tempfile.TemporaryDirectory(prefix="btc-first-run-") as tmp:
        work = Path(tmp)
        empty = work / "empty_flow.py"
        empty.write_text(EMPTY_FLOW)
        for i in range(repeats + 1):
            replay = work / f"replay{i}.csv"
            shutil.copyfile(DEFAULT_REPLAY_FILE, replay)
            commands = {
                "btc": [sys.executable, str(PROJECT_ROOT / "flows" / "btc.py")],
                "empty": [sys.executable, str(empty)],
                **{k: [sys.executable, "-c", code] for k, code in IMPORTS.items()},
            }
            for name, cmd in commands.items():
                env = prefect_env(work / f"home-{name}-{i}")  # fresh: no warm database
                env.pop("PREFECT_API_URL", None)  # Prefect starts its temporary server
                env[STARTUP_TIMEOUT] = "180"  # its 20 s default is short on a busy machine
                env.update(BTC_REPLAY_FILE=str(replay), BTC_DB_PATH=str(work / f"{name}{i}.db"))
                ms = timed(lambda cmd=cmd, env=env: run_checked(cmd, env))
                if i:  # round 0 writes bytecode and warms the disk cache
                    times[name].append(ms)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    times = first_runs(args.repeats)
    ms = {k: statistics.median(v) for k, v in times.items()}
    print(f"fresh processes, fresh PREFECT_HOME each, no server, median of {args.repeats}")
    for name, values in times.items():
        print(f"  {name}: " + ", ".join(f"{v:.0f}" for v in values) + " ms")
    print(f"python flows/btc.py    : {ms['btc']:7.0f} ms")
    print(f"python empty_flow.py   : {ms['empty']:7.0f} ms  (Prefect's floor)")
    print(
        f"ours                   : {ms['btc'] - ms['empty']:+7.0f} ms  (ratio {ms['btc'] / ms['empty']:.2f}x)"
    )
    extra_import = ms["import flows.btc"] - ms["import prefect"]
    print(
        f"  of which importing   : {extra_import:+7.0f} ms  (import flows.btc "
        f"{ms['import flows.btc']:.0f} ms vs from prefect import flow {ms['import prefect']:.0f} ms)"
    )
    print(f"  and running          : {ms['btc'] - ms['empty'] - extra_import:+7.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
