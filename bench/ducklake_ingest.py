"""Ingest benchmark: ``btc backfill`` of the 36k-row shared CSV into a DuckLake (catalog in the
local PostgreSQL, Parquet in S3 served by moto on 127.0.0.1) versus into the local DuckDB file.

Both are measured in the same run, interleaved, each into a fresh store (a new catalog database
and prefix for the lake); the ratio is what counts. Needs PostgreSQL on 127.0.0.1:5432.

    uv run python -m bench.ducklake_ingest [--repeats 3] [--replay-file FILE.csv]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench.ingest import file_window
from btc_core.lake import LakeStore
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings, shared_csv_path
from deployments.postgres import postgres_available
from tests.lake import Lake, lake_s3, new_lake


def ingest(settings: Settings, csv: Path) -> float:
    """Seconds for one backfill of the whole file (extract, load, daily_avg)."""
    started = time.perf_counter()
    backfill(settings, file_window(csv))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replay-file", type=Path, help="default: the 36k-row shared CSV")
    args = parser.parse_args(argv)
    csv = args.replay_file or shared_csv_path()
    if csv is None:
        print("shared data not found (set BTC_SHARED_DATA): nothing to measure")
        return 0
    if not postgres_available():
        print("PostgreSQL is not reachable on 127.0.0.1:5432: nothing to measure")
        return 1
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    print(f"duckdb {duckdb.__version__}, {csv.name}, median of {args.repeats}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="btc-bench-lake-"))
    local_s, lake_s = [], []
    try:
        with lake_s3() as s3:
            for i in range(args.repeats):  # interleaved, so machine noise hits both alike
                local = Settings.from_env(
                    env={}, db_path=workdir / f"local{i}.duckdb", replay_file=csv, notify="none"
                )
                local_s.append(ingest(local, csv))
                with new_lake(s3) as lake:
                    shared = lake_settings(lake, workdir / f"lake{i}" / "btc.duckdb", csv)
                    lake_s.append(ingest(shared, csv))
                    store = store_for(shared)
                    assert isinstance(store, LakeStore)
                    counts = store.file_counts()
        lo, la = statistics.median(local_s), statistics.median(lake_s)
        print(
            f"36k-row ingest: DuckLake (PostgreSQL catalog + S3 on moto) {la * 1000:.0f} ms vs "
            f"local DuckDB file {lo * 1000:.0f} ms -> ratio {la / lo:.2f}; "
            f"lake data files after one backfill: {counts}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def lake_settings(lake: Lake, db_path: Path, csv: Path) -> Settings:
    return Settings.from_env(env=lake.env(), db_path=db_path, replay_file=csv, notify="none")


if __name__ == "__main__":
    sys.exit(main())
