"""A load and the refresh of the days it touched commit together: a crash at any point leaves the
old state or the new one, never observations with stale averages that ``btc export`` serves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from btc_core.observations import Batch
from btc_core.pipeline import store_for
from btc_core.sources import Replay
from btc_core.store import PriceStore, Store
from btc_core.transform import export
from tests.crash import kill_inside_load
from tests.csvs import rows, write
from tests.unit.test_transform import independent_daily_averages


def observations(store) -> tuple[int, int]:
    with store.read() as con:
        return con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone()


def test_a_load_alone_leaves_daily_avg_right_for_its_days(settings, replay_csv):
    """Before, ``load`` left daily_avg to a separate transaction (a separate call)."""
    store = store_for(settings)
    result = store.load(Replay(settings).fetch())
    assert (result.days, result.received, result.rejected) == (92, 2208, 0)
    assert "daily_avg refreshed for 92 day(s)" in result.summary()
    assert json.loads(export(store)) == independent_daily_averages(replay_csv)


def test_a_failure_between_upsert_and_refresh_keeps_both_tables(
    settings, replay_csv, tmp_path, monkeypatch
):
    store = Store(tmp_path / "s.duckdb")
    store.load(Replay(settings, write(tmp_path / "first.csv", rows(replay_csv, 100))).fetch())
    before = export(store)

    def power_cut(store: PriceStore) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(PriceStore, "before_commit", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        Store(tmp_path / "s.duckdb").load(Replay(settings).fetch())
    assert observations(store) == (100, 100) and export(store) == before


def test_kill_9_between_upsert_and_refresh_leaves_the_old_state_then_a_rerun_the_new(
    settings, replay_csv, tmp_path
):
    first = write(tmp_path / "first.csv", rows(replay_csv, 1000))
    store = store_for(settings)
    store.load(Replay(settings.replace(replay_file=first)).fetch())
    before = export(store)
    env = {"BTC_DB_PATH": str(settings.db_path), "BTC_REPLAY_FILE": str(replay_csv)}
    kill_inside_load(env)
    assert observations(store) == (1000, 1000)
    assert export(store) == before  # a reader sees the old state, whole
    store.load(Replay(settings).fetch())
    assert observations(store) == (2208, 2208)
    assert json.loads(export(store)) == independent_daily_averages(replay_csv)


def test_a_batch_of_a_single_new_day_refreshes_only_that_day(settings, replay_csv, tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.load(Replay(settings).fetch())
    untouched = json.loads(export(store))[:-1]
    last_day = Replay(settings).fetch().ts[-24:]
    result = store.load(Batch("replay", last_day, np.full(24, 1.0)))
    assert (result.days, result.updated) == (1, 24)
    days = json.loads(export(store))
    assert days[:-1] == untouched and days[-1]["avg_price_usd"] == 1.0
