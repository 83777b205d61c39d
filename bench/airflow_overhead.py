"""Warm ``dag.test()`` overhead of the Airflow port over the plain core, on the same replay slice.

    airflow_port/.venv/bin/python -m bench.airflow_overhead [--repeats 7]

Both paths run one full cycle (extract, load into a fresh DuckDB, transform, notify=none); the
baseline (``btc_core.pipeline.run_cycle``) is measured in the same run, interleaved with the
DAG runs. One warm-up run of each is not counted. Airflow logs at WARNING, like ``btc run``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import warnings
from pathlib import Path

from btc_airflow import env

from bench.common import overhead_args, timed

HOME = env.PORT_DIR / "var" / "bench_airflow_home"


def main(argv: list[str] | None = None) -> None:
    args = overhead_args(__doc__.splitlines()[0], argv)

    env.apply(HOME)
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    # Imported only now: Airflow reads its configuration once, on import.
    from btc_airflow.parity import load_dag, migrate_db, run_once

    from btc_core.pipeline import run_cycle
    from btc_core.settings import DEFAULT_REPLAY_FILE, Settings
    from btc_core.store import Store
    from btc_core.transform import export

    replay = (args.replay_file or DEFAULT_REPLAY_FILE).resolve()
    migrate_db()
    dag = load_dag()
    plain_ms: list[float] = []
    airflow_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="btc-bench-") as tmp:
        for i in range(args.repeats + 1):
            plain = Settings.from_env(
                env={}, replay_file=replay, db_path=Path(tmp, f"plain{i}.duckdb"), notify="none"
            )
            airflow_db = Path(tmp, f"airflow{i}.duckdb")
            p = timed(lambda s=plain: run_cycle(s))
            a = timed(
                lambda db=airflow_db: run_once(
                    dag, source="replay", replay_file=str(replay), db_path=str(db), notify="none"
                )
            )
            if export(Store(plain.db_path)) != export(Store(airflow_db)):
                raise SystemExit("the two paths disagree: run the parity test")
            if i:  # run 0 warms both paths up
                plain_ms.append(p)
                airflow_ms.append(a)

    base, dag_ms = statistics.median(plain_ms), statistics.median(airflow_ms)
    print(f"replay slice: {replay.name}, {args.repeats} warm runs per path, medians")
    print(f"plain run_cycle : {base:8.1f} ms")
    print(f"Airflow dag.test: {dag_ms:8.1f} ms")
    print(f"overhead        : {dag_ms - base:+8.1f} ms  (ratio {dag_ms / base:.1f}x)")


if __name__ == "__main__":
    main()
