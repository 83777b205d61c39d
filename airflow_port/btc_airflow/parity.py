"""Run the DAG once with ``dag.test()`` on a replay file into a fresh DuckDB; write the export.

    python -m btc_airflow.parity run --replay-file X --db Y --out Z

The export is the output contract of every path, so its bytes must equal those of the plain
path (``btc run`` then ``btc export``) on the same file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

from btc_airflow import env
from btc_core.store import Store
from btc_core.transform import export

if TYPE_CHECKING:  # Airflow itself is imported late: it reads its configuration on import
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

DAG_ID = "btc_price"


def migrate_db() -> None:
    """Create or upgrade the metadata DB of the current AIRFLOW_HOME (idempotent)."""
    from airflow.utils import db

    db.upgradedb()


def load_dag() -> DAG:
    """The DAG as Airflow's parser sees it (raises if ``dags/`` has an import error)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=env.DAGS_FOLDER)
    if bag.import_errors:
        raise RuntimeError(f"import errors in {env.DAGS_FOLDER}: {bag.import_errors}")
    return bag.dags[DAG_ID]


@contextmanager
def btc_environ(**settings: str) -> Iterator[None]:
    """``BTC_<NAME>`` variables set for the block (the DAG reads its settings from them)."""
    values = {f"BTC_{name.upper()}": value for name, value in settings.items()}
    with mock.patch.dict(os.environ, values):
        yield


def run_once(dag: DAG, **settings: str) -> DagRun:
    """One ``dag.test()`` run with the given ``BTC_*`` settings; raises unless it succeeded."""
    from airflow.sdk import DagRunState

    with btc_environ(**settings):
        run = dag.test()
    if run.state != DagRunState.SUCCESS:
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        raise RuntimeError(f"DAG run {run.run_id} ended {run.state}: {states}")
    return run


def run_replay(dag: DAG, replay_file: Path, db: Path, out: Path | None = None) -> str:
    """Run ``dag`` on ``replay_file`` into ``db``; the export JSON (also written to ``out``)."""
    run_once(dag, source="replay", replay_file=str(replay_file), db_path=str(db), notify="none")
    return export(Store(db), out)


def airflow_cycle(home: Path = env.DEFAULT_HOME) -> Callable[[], DagRun]:
    """A function running one ``dag.test()`` with the ``BTC_*`` settings of the environment at
    call time (the live parity); the metadata DB of ``home`` is migrated first."""
    env.apply(home.resolve())
    migrate_db()
    dag = load_dag()
    return lambda: run_once(dag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m btc_airflow.parity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="dag.test() on a replay file, then export")
    run.add_argument("--replay-file", type=Path, required=True, help="CSV to replay")
    run.add_argument("--db", type=Path, required=True, help="DuckDB file to create")
    run.add_argument("--out", type=Path, required=True, help="export JSON to write")
    run.add_argument("--home", type=Path, default=env.DEFAULT_HOME, help="AIRFLOW_HOME")
    args = parser.parse_args(argv)
    if args.db.exists():
        parser.error(f"{args.db} exists: parity needs a fresh DuckDB file")
    env.apply(args.home.resolve())
    migrate_db()
    run_replay(load_dag(), args.replay_file.resolve(), args.db.resolve(), args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
