"""The ``btc`` console script as a user runs it: exit codes, one-line errors, the done-when check."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.csvs import rows, with_close, write
from tests.unit.test_transform import independent_daily_averages

pytestmark = pytest.mark.integration
BTC = Path(sys.executable).parent / "btc"  # the console script of this environment


def btc(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BTC_")}
    full_env.update({"BTC_NOTIFY": "stdout", **(env or {})})
    return subprocess.run(
        [str(BTC), *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def test_backfill_of_the_whole_shared_file_matches_pandas_and_reruns_add_nothing(
    shared_csv, tmp_path
):
    db, out = str(tmp_path / "b.duckdb"), tmp_path / "daily.json"
    args = ("backfill", "--source", "replay", "--replay-file", str(shared_csv), "--db", db)
    first = btc(*args, "--from", "2019-11-20", "--to", "2023-12-31")
    assert first.returncode == 0, first.stderr
    assert "36061 new, 0 updated" in first.stderr
    assert btc("export", "--db", db, "--out", str(out)).returncode == 0
    exported = json.loads(out.read_text())
    assert len(exported) == 1503 and exported == independent_daily_averages(shared_csv)
    again = btc(*args, "--from", "2019-11-20", "--to", "2023-12-31")
    assert "0 new, 0 updated" in again.stderr
    assert btc("export", "--db", db).stdout == out.read_text()


def test_run_prints_the_notification_and_exports(tmp_path):
    db = str(tmp_path / "r.duckdb")
    run = btc("run", "--db", db)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("BTC daily average 2023-12-31: $42,420.02")
    assert json.loads(btc("export", "--db", db).stdout)[-1] == {
        "avg_price_usd": 42420.02,
        "day": "2023-12-31",
        "n_obs": 24,
    }
    png = tmp_path / "charts" / "daily.png"
    chart = btc("chart", "--db", db, "--out", str(png), "--days", "30")
    assert chart.returncode == 0, chart.stderr
    assert f"wrote {png} (2023-12-02 .. 2023-12-31)" in chart.stderr
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (
            ("run", "--source", "binance"),
            {},
            2,
            "btc: error: argument --source: invalid choice: 'binance'",
        ),
        (
            ("backfill", "--from", "2023-13-01", "--to", "2023-12-31"),
            {},
            2,
            "'2023-13-01' is not a date",
        ),
        (
            ("backfill", "--from", "2023-12-31", "--to", "2023-12-01"),
            {},
            2,
            "--to 2023-12-01 is before --from 2023-12-31",
        ),
        (
            ("run", "--replay-file", "/nonexistent.csv"),
            {},
            1,
            "cannot read replay file /nonexistent.csv: No such file or directory",
        ),
        (
            ("run",),
            {"BTC_SOURCE": "kraken"},
            2,
            "BTC_SOURCE='kraken': input should be 'replay', 'coingecko' or 'coinbase'",
        ),
        (("chart", "--out", "c.png"), {}, 1, "x.duckdb: run the pipeline first, or check --db"),
        (
            ("run",),
            {"BTC_LOCK_TIMEOUT_S": "x"},
            2,
            "BTC_LOCK_TIMEOUT_S='x': input should be a valid number",
        ),
        (
            ("run", "--source", "coingecko"),
            {
                "BTC_COINGECKO_URL": "http://127.0.0.1:9/api",
                "BTC_FAILOVER_SOURCE": "none",
                "BTC_HTTP_RETRIES": "0",
            },
            1,
            "coingecko GET /simple/price: connection refused (http://127.0.0.1:9/api)",
        ),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path, args, env, code, message):
    result = btc(*args, "--db", str(tmp_path / "x.duckdb"), env=env)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("btc: error")] == [
        result.stderr.splitlines()[-1]
    ]


def test_malformed_rows_are_reported_with_line_numbers_and_the_rest_loads(replay_csv, tmp_path):
    good = rows(replay_csv, 24)
    good[4] = with_close(good[4], "12,5")  # an extra field
    good[9] = with_close(good[9], "oops")
    path = write(tmp_path / "messy.csv", good)
    result = btc("run", "--replay-file", str(path), "--db", str(tmp_path / "m.duckdb"))
    assert result.returncode == 0, result.stderr
    assert "line 6: too many fields ('1696132800,2023-10-01,4," in result.stderr
    assert "line 11: non-numeric price (time='1696150800', price='oops')" in result.stderr
    assert "22 observations kept of 24 received (2 rejected" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = btc("run", "--replay-file", "/nonexistent.csv", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_doctor_reports_a_broken_setup_with_fixes(tmp_path):
    result = btc(
        "doctor", "--db", str(tmp_path / "d.duckdb"), "--replay-file", str(Path("/nonexistent.csv"))
    )
    assert result.returncode == 1
    assert "ok   duckdb:" in result.stdout
    assert (
        "FAIL source replay: cannot read replay file /nonexistent.csv: No such file or directory"
        in result.stdout
    )
    assert "fix: point BTC_REPLAY_FILE at a CSV" in result.stdout
