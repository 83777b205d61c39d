"""Parity run: materialize ``btc_price``, ``daily_avg`` and the checks on a replay file, then export.

    python -m dagster_port.parity REPLAY_CSV DB_PATH OUT_JSON

The JSON must be byte-identical to ``btc run`` + ``btc export`` on the same file (tested).
"""

import argparse
from pathlib import Path

from dagster import DagsterInstance, materialize

from btc_core.pipeline import store_for
from btc_core.settings import Settings
from btc_core.transform import export
from dagster_port.assets import btc_price, daily_avg
from dagster_port.checks import CHECKS
from dagster_port.resources import resources_for

# Dagster's console logger shows every event at DEBUG; warnings are enough here, like `btc run`.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def materialize_live() -> None:
    """One materialization of the assets and checks with the resources of the ``BTC_*``
    environment (the live parity: a failed step raises)."""
    materialize(
        [btc_price, daily_avg, *CHECKS],
        resources=resources_for(Settings.from_env()),
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET_RUN_CONFIG,
    )


def run(replay_file: Path, db_path: Path, out_json: Path) -> str:
    """Load ``replay_file`` into the new DuckDB file ``db_path``; write and return the export."""
    if db_path.exists():
        raise FileExistsError(f"{db_path} exists: parity needs a fresh DuckDB file")
    settings = Settings.from_env(env={}, replay_file=replay_file, db_path=db_path, notify="none")
    materialize(
        [btc_price, daily_avg, *CHECKS],
        resources=resources_for(settings),
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET_RUN_CONFIG,
    )
    return export(store_for(settings), out_json)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dagster_port.parity", description=__doc__.splitlines()[0]
    )
    parser.add_argument("replay_file", type=Path)
    parser.add_argument("db_path", type=Path)
    parser.add_argument("out_json", type=Path)
    args = parser.parse_args(argv)
    run(args.replay_file, args.db_path, args.out_json)
    print(f"wrote {args.out_json}")


if __name__ == "__main__":
    main()
