import json
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

import pandas as pd

from btc_core.pipeline import run_cycle, store_for
from btc_core.sources import Replay
from btc_core.store import Store
from btc_core.transform import DayAvg, export, export_json, latest, refresh_daily_avg
from tests.csvs import rows, write


def test_export_is_the_output_contract_byte_for_byte():
    text = export_json(
        [DayAvg(date(2023, 1, 2), 16679.444999, 24), DayAvg(date(2023, 1, 1), 16600.0, 3)]
    )
    assert text == (
        "[\n"
        '  {\n    "avg_price_usd": 16600.0,\n    "day": "2023-01-01",\n    "n_obs": 3\n  },\n'
        '  {\n    "avg_price_usd": 16679.44,\n    "day": "2023-01-02",\n    "n_obs": 24\n  }\n'
        "]\n"
    )


def test_daily_average_equals_an_independent_pandas_groupby(settings, replay_csv, tmp_path):
    run_cycle(settings)
    exported = json.loads(export(store_for(settings), tmp_path / "out.json"))
    assert exported == independent_daily_averages(replay_csv)
    assert (tmp_path / "out.json").read_text() == export(store_for(settings))


def independent_daily_averages(csv) -> list[dict]:
    """The contract computed by pandas from the CSV text with exact decimals (no DuckDB)."""
    frame = pd.read_csv(csv, dtype={"close": str})
    frame["day"] = pd.to_datetime(frame["time"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    frame["close"] = frame["close"].map(Decimal)
    days = frame.groupby("day")["close"].agg(["sum", "count"]).reset_index()
    cent = Decimal("0.01")
    return [
        {"avg_price_usd": float((s / n).quantize(cent, ROUND_HALF_EVEN)), "day": d, "n_obs": int(n)}
        for d, s, n in zip(days["day"], days["sum"], days["count"], strict=True)
    ]


def test_refresh_touches_only_its_days(settings, replay_csv, tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.load(Replay(settings, write(tmp_path / "a.csv", rows(replay_csv, 48))).fetch())
    query = "SELECT day, avg_price_usd FROM daily_avg ORDER BY day"
    with store.connect() as con:
        (day1, before1), (day2, _) = con.execute(query).fetchall()  # 2023-10-01, 2023-10-02
        con.execute("UPDATE observations SET price_usd = 1")  # both days change under the table
    assert refresh_daily_avg(store, day2, day2) == 1
    with store.connect() as con:
        assert con.execute(query).fetchall() == [(day1, before1), (day2, 1.0)]


def test_latest_carries_the_change_against_the_previous_day(settings):
    run_cycle(settings)
    last = latest(store_for(settings))
    assert (last.current.day, last.previous.day) == (date(2023, 12, 31), date(2023, 12, 30))
    assert round(last.change_pct, 2) == 0.78
