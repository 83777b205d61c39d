from datetime import datetime

import pandas as pd

from btc_core import quality
from btc_core.observations import Batch
from btc_core.store import Store


def store_with(tmp_path, rows) -> Store:
    store = Store(tmp_path / "q.duckdb")
    frame = pd.DataFrame(rows, columns=["ts", "price_usd"]).astype({"ts": "datetime64[us]"})
    store.load(Batch("test", frame["ts"].to_numpy(), frame["price_usd"].to_numpy()))
    return store


def test_clean_data_passes_every_rule(settings, tmp_path):
    store = store_with(tmp_path, [(datetime(2023, 1, 1, h), 100.0 + h) for h in range(24)])
    assert all(quality.check(store, rule).passed for rule in quality.RULES)
    assert quality.max_per_day(store) == 24


def test_rules_count_and_show_what_breaks_them(tmp_path):
    rows = [(datetime(2023, 1, 1, h, m), 100.0) for h in range(24) for m in (0, 30)]
    rows[3] = (rows[3][0], -1.0)
    store = store_with(tmp_path, rows)
    assert quality.check(store, "non_positive_prices").examples == ["2023-01-01 01:30"]
    repeated = quality.check(store, "repeated_hours")
    assert repeated.violations == 24 and repeated.examples[0] == "2023-01-01 00:00"
    assert quality.check(store, "days_over_24").examples == ["2023-01-01: 48"]
