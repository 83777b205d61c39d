"""Ingest benchmark: ``btc backfill`` of a replay file versus a bare DuckDB ``read_csv``.

Both are measured in the same run on the same file, each into a fresh database; the ratio is what
counts. Once in this process (the work alone; the pipeline's peak RSS read from a forked child),
and once as a user meets it: each side a fresh process, ``python -m btc_core.cli backfill``
against ``python -c`` with the bare ``read_csv``, with the start-up floor beside them (the bare
interpreter, ``import duckdb``, ``import btc_core.cli``).

    uv run python -m bench.ingest [--rows 5000000] [--repeats 3] [--fresh-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from btc_core.observations import Window
from btc_core.pipeline import backfill
from btc_core.settings import PROJECT_ROOT, Settings, shared_csv_path
from btc_core.sql import one_row

BENCH_DIR = PROJECT_ROOT / "var" / "bench"


def generate(path: Path, rows: int) -> Path:
    """A CSV in the shared/data format with ``rows`` one-minute candles ending 2023-12-31."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    end = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    con = duckdb.connect()
    con.execute(
        f"""COPY (
            SELECT t AS time, strftime(to_timestamp(t) AT TIME ZONE 'UTC', '%Y-%m-%d') AS date,
                   hour(to_timestamp(t) AT TIME ZONE 'UTC') AS hour,
                   p AS open, p + 10 AS high, p AS close, p - 10 AS low, 1.5 AS volumefrom,
                   round(p * 1.5, 2) AS volumeto
              FROM (SELECT {end} - 60 * (i + 1) AS t,
                           round(30000 + 5000 * sin(i / 5000.0) + (hash(i) % 1000) / 100.0, 2) AS p
                      FROM range({rows}) r(i))
             ORDER BY t
        ) TO '{path}' (HEADER)"""
    )
    con.close()
    return path


WINDOWS: dict[Path, Window] = {}  # the whole days each file covers, found before timing


def file_window(path: Path) -> Window:
    con = duckdb.connect()
    first, last = one_row(
        con, "SELECT min(time), max(time) FROM read_csv($path, header = true)", {"path": str(path)}
    )
    con.close()
    start, end = (datetime.fromtimestamp(t, UTC) for t in (first, last))
    return Window.days(start.date(), end.date())


def bare_read_csv(path: Path, db: Path) -> None:
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE raw AS SELECT * FROM read_csv('{path}')")
    con.close()


def pipeline_backfill(path: Path, db: Path) -> None:
    settings = Settings.from_env(env={}, db_path=db, replay_file=path, notify="none")
    backfill(settings, WINDOWS[path])


def timed(fn: Callable[[Path, Path], None], path: Path, workdir: Path) -> float:
    db = workdir / f"{fn.__name__}.duckdb"
    for leftover in workdir.glob(f"{fn.__name__}.duckdb*"):
        leftover.unlink()
    started = time.perf_counter()
    fn(path, db)
    return time.perf_counter() - started


def peak_rss_mib(fn: Callable[[Path, Path], None], path: Path, workdir: Path) -> float:
    """Peak resident memory of ``fn`` run in a forked child, in MiB."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            fn(path, workdir / "rss.duckdb")
        finally:
            os._exit(0)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise RuntimeError(f"benchmark child failed with status {status}")
    return usage.ru_maxrss / 1024


# The bare side as a process of its own: connect, read the whole file into a table, close (the
# checkpoint on close is part of the work, as it is for the CLI).
BARE_SCRIPT = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE raw AS SELECT * FROM read_csv('" + sys.argv[2] + "')")
con.close()
"""
FLOOR = {
    "python": "pass",
    "import duckdb": "import duckdb",
    "import btc_core.cli": "import btc_core.cli",
}


def fresh_env() -> dict[str, str]:
    """This environment without ``BTC_*`` settings, and with bytecode caches written and read as
    on a user's machine (some machines set PYTHONDONTWRITEBYTECODE)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BTC_") and k != "PYTHONDONTWRITEBYTECODE"
    }


def process_s(argv: list[str]) -> float:
    """Wall-clock seconds of one fresh process; its error output if it fails."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=fresh_env(), capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{argv[2:5]} exited {done.returncode}: {done.stderr.strip()}")
    return took


def fresh_commands(path: Path, workdir: Path, i: int) -> dict[str, list[str]]:
    """The two sides, each into a database of its own for round ``i``."""
    window = WINDOWS[path]
    last = window.end - timedelta(days=1)
    return {
        "bare": [sys.executable, "-c", BARE_SCRIPT, str(workdir / f"bare{i}.duckdb"), str(path)],
        "btc": [
            *(sys.executable, "-m", "btc_core.cli", "backfill", "--source", "replay"),
            *("--from", f"{window.start:%Y-%m-%d}", "--to", f"{last:%Y-%m-%d}"),
            *("--replay-file", str(path), "--db", str(workdir / f"btc{i}.duckdb")),
        ],
    }


def compare_fresh(label: str, path: Path, repeats: int, target: float) -> bool:
    """Each side in a fresh process, interleaved, after one warm-up round (bytecode and disk
    caches); medians, the ratio, and the start-up floor measured the same way."""
    WINDOWS[path] = file_window(path)
    times: dict[str, list[float]] = {k: [] for k in ("bare", "btc", *FLOOR)}
    with tempfile.TemporaryDirectory(prefix="btc-bench-") as tmp:
        for i in range(repeats + 1):
            took = {k: process_s(cmd) for k, cmd in fresh_commands(path, Path(tmp), i).items()}
            for name, code in FLOOR.items():
                took[name] = process_s([sys.executable, "-c", code])
            if i:
                for name, seconds in took.items():
                    times[name].append(seconds)
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    ratio = ms["btc"] / ms["bare"]
    ok = ratio <= target
    print(
        f"{label}, fresh processes: btc backfill {ms['btc']:.0f} ms vs bare read_csv "
        f"{ms['bare']:.0f} ms -> ratio {ratio:.2f} (target <= {target}) {'OK' if ok else 'OVER'}",
        flush=True,
    )
    print("  start-up floor: " + ", ".join(f"{k} {ms[k]:.0f} ms" for k in FLOOR), flush=True)
    return ok


def compare(label: str, path: Path, repeats: int, target: float, rss_limit: float | None) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="btc-bench-"))
    WINDOWS[path] = file_window(path)
    try:
        base, pipe = [], []
        for _ in range(repeats):  # interleaved, so machine noise hits both alike
            base.append(timed(bare_read_csv, path, workdir))
            pipe.append(timed(pipeline_backfill, path, workdir))
        b, p = statistics.median(base), statistics.median(pipe)
        ratio = p / b
        ok = ratio <= target
        line = (
            f"{label}: pipeline backfill {p * 1000:.0f} ms vs bare read_csv {b * 1000:.0f} ms "
            f"-> ratio {ratio:.2f} (target <= {target}) {'OK' if ok else 'OVER'}"
        )
        if rss_limit is not None:
            rss = peak_rss_mib(pipeline_backfill, path, workdir)
            ok = ok and rss <= rss_limit
            line += f"; peak RSS {rss:.0f} MiB (limit {rss_limit:.0f})"
        print(line, flush=True)
        return ok
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fresh-only", action="store_true", help="only the fresh-process comparison"
    )
    args = parser.parse_args()
    print(
        f"duckdb {duckdb.__version__}, {os.cpu_count()} cpus, median of {args.repeats}", flush=True
    )
    big = generate(BENCH_DIR / f"generated_{args.rows}.csv", args.rows)
    ok = compare_fresh(f"{args.rows:,}-row generated CSV", big, args.repeats, 1.3)
    if args.fresh_only:
        return 0 if ok else 1
    shared = shared_csv_path()
    if shared is None:
        print("shared data not found: skipping the 36k-row comparison")
    else:
        ok &= compare("36,061-row shared CSV", shared, args.repeats, 1.5, None)
    ok &= compare(f"{args.rows:,}-row generated CSV", big, args.repeats, 2.0, 1024.0)
    print(f"self peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
