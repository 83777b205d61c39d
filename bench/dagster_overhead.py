"""Warm ``materialize`` overhead of the Dagster port over the plain core, on the same replay slice.

    .venv/bin/python -m bench.dagster_overhead [--repeats 7]

Both paths run one full cycle into a fresh DuckDB: the plain baseline
(``btc_core.pipeline.run_cycle``, notify=none) and ``materialize([btc_price, daily_avg])`` on one
warm in-memory Dagster instance, interleaved in the same run. One warm-up run of each is not
counted. The asset checks are left out (the plain path has none); Dagster logs at WARNING.
"""

import statistics
import tempfile
from pathlib import Path

from dagster import DagsterInstance, materialize

from bench.common import overhead_args, timed
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
    plain_ms: list[float] = []
    dagster_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="btc-bench-") as tmp:
        for i in range(args.repeats + 1):
            plain, dagster = (
                Settings.from_env(
                    env={},
                    replay_file=replay,
                    db_path=Path(tmp, f"{name}{i}.duckdb"),
                    notify="none",
                )
                for name in ("plain", "dagster")
            )
            p = timed(lambda s=plain: run_cycle(s))
            d = timed(
                lambda s=dagster: materialize(
                    [btc_price, daily_avg],
                    resources=resources_for(s),
                    instance=instance,
                    run_config=QUIET_RUN_CONFIG,
                )
            )
            if export(store_for(plain)) != export(store_for(dagster)):
                raise SystemExit("the two paths disagree: run the parity test")
            if i:  # run 0 warms both paths up
                plain_ms.append(p)
                dagster_ms.append(d)

    base, warm = statistics.median(plain_ms), statistics.median(dagster_ms)
    print(f"replay slice: {replay.name}, {args.repeats} warm runs per path, medians")
    print(f"plain run_cycle    : {base:8.1f} ms")
    print(f"Dagster materialize: {warm:8.1f} ms")
    print(f"overhead           : {warm - base:+8.1f} ms  (ratio {warm / base:.1f}x)")


if __name__ == "__main__":
    main()
