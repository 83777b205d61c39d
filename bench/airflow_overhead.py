"""Warm ``dag.test()`` overhead of the Airflow port over the plain core, on the same replay slice.

    airflow_port/.venv/bin/python -m bench.airflow_overhead [--repeats 7]

Both paths run one full cycle (extract, load into a fresh DuckDB, transform, notify=none); the
baseline (``btc_core.pipeline.run_cycle``) is measured in the same run, interleaved with the
DAG runs. One warm-up run of each is not counted. Airflow logs at WARNING, like ``btc run``.
"""

from __future__ import annotations

import os
import warnings

from btc_airflow import env

from bench.common import interleaved, overhead_args, print_overhead

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
    base, dag_ms = interleaved(
        args.repeats,
        lambda db: run_cycle(
            Settings.from_env(env={}, replay_file=replay, db_path=db, notify="none")
        ),
        lambda db: run_once(
            dag, source="replay", replay_file=str(replay), db_path=str(db), notify="none"
        ),
        lambda a, b: export(Store(a)) == export(Store(b)),
    )
    print_overhead(replay, args.repeats, "Airflow dag.test", base, dag_ms)


if __name__ == "__main__":
    main()
