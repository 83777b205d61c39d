"""Warm ``materialize`` overhead of the Dagster port over the plain core, on the same replay slice.

    .venv/bin/python -m bench.dagster_overhead [--repeats 7]

Both paths run one full cycle into a fresh DuckDB: the plain baseline
(``btc_core.pipeline.run_cycle``, notify=none) and ``materialize([btc_price, daily_avg])`` on one
warm in-memory Dagster instance, interleaved in the same run. One warm-up run of each is not
counted. The asset checks are left out (the plain path has none); Dagster logs at WARNING.
"""

from pathlib import Path

from dagster import DagsterInstance, materialize

from bench.common import interleaved, overhead_args, print_overhead
from btc_core.pipeline import run_cycle, store_for
from btc_core.settings import DEFAULT_REPLAY_FILE, Settings
from btc_core.transform import export
from dagster_port.assets import btc_price, daily_avg
from dagster_port.parity import QUIET_RUN_CONFIG
from dagster_port.resources import resources_for


def main(argv: list[str] | None = None) -> None:
    args = overhead_args(__doc__.splitlines()[0], argv)
    replay = (args.replay_file or DEFAULT_REPLAY_FILE).resolve()
    instance = DagsterInstance.ephemeral()

    def settings(db: Path) -> Settings:
        return Settings.from_env(env={}, replay_file=replay, db_path=db, notify="none")

    def dagster(db: Path) -> object:
        return materialize(
            [btc_price, daily_avg],
            resources=resources_for(settings(db)),
            instance=instance,
            run_config=QUIET_RUN_CONFIG,
        )

    base, warm = interleaved(
        args.repeats,
        lambda db: run_cycle(settings(db)),
        dagster,
        lambda a, b: export(store_for(settings(a))) == export(store_for(settings(b))),
    )
    print_overhead(replay, args.repeats, "Dagster materialize", base, warm)


if __name__ == "__main__":
    main()
