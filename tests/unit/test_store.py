import subprocess
import sys
import threading
import time

import duckdb
import pytest

from btc_core.errors import StoreBusy
from btc_core.observations import Batch
from btc_core.pipeline import run_cycle
from btc_core.sources import Replay
from btc_core.store import PriceStore, Store
from tests.busy import busy_once
from tests.csvs import rows, with_close, write


def count(store: Store, sql: str = "SELECT count(*), count(DISTINCT ts) FROM observations"):
    with store.connect() as con:
        return con.execute(sql).fetchone()


def test_rerun_adds_no_row_and_changes_nothing(settings, replay_csv, tmp_path):
    store = Store(tmp_path / "s.duckdb")
    batch = Replay(settings).fetch()
    first = store.load(batch)
    assert (first.inserted, first.updated, first.unchanged) == (2208, 0, 0)
    (ingested,) = count(store, "SELECT max(ingested_at) FROM observations")
    again = store.load(batch)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2208)
    assert count(store) == (2208, 2208)
    assert count(store, "SELECT max(ingested_at) FROM observations") == (ingested,)


def test_a_later_observation_replaces_the_earlier_one(settings, replay_csv, tmp_path):
    store = Store(tmp_path / "s.duckdb")
    good = rows(replay_csv, 3)
    store.load(Replay(settings, write(tmp_path / "a.csv", good)).fetch())
    result = store.load(
        Replay(settings, write(tmp_path / "b.csv", [with_close(good[1], "1.5")])).fetch()
    )
    assert (result.inserted, result.updated) == (0, 1)
    assert count(store, "SELECT price_usd FROM observations ORDER BY ts LIMIT 1 OFFSET 1") == (1.5,)


def test_a_failure_inside_the_load_leaves_the_previous_state(settings, tmp_path, monkeypatch):
    batch = Replay(settings).fetch()
    half = Batch("replay", batch.ts[:100], batch.price_usd[:100])
    Store(tmp_path / "s.duckdb").load(half)

    def crash(store: PriceStore) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(PriceStore, "before_commit", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        Store(tmp_path / "s.duckdb").load(batch)
    assert count(Store(tmp_path / "s.duckdb")) == (100, 100)


def test_a_second_writer_waits_for_the_first(settings, tmp_path):
    store = Store(tmp_path / "s.duckdb", lock_timeout_s=10)
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with store.connect():
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    result = store.load(Replay(settings).fetch())
    holder.join()
    assert result.inserted == 2208 and time.monotonic() - started >= 0.4


def test_a_writer_that_waits_too_long_gets_a_clear_error(settings, tmp_path):
    store = Store(tmp_path / "s.duckdb", lock_timeout_s=0.3)
    with (
        Store(tmp_path / "s.duckdb").connect(),
        pytest.raises(StoreBusy, match="is busy: another btc writer"),
    ):
        store.load(Replay(settings).fetch())


def test_a_foreign_process_holding_duckdb_is_a_clear_error_not_a_lock_error(settings, tmp_path):
    path = tmp_path / "s.duckdb"
    duckdb.connect(str(path)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,sys,time; c=duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            StoreBusy, match=rf"another process \(PID {holder.pid}\) kept it"
        ) as err:
            Store(path, lock_timeout_s=0.5).load(Replay(settings).fetch())
        assert "Could not set lock" not in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_the_plain_runner_retries_a_busy_store_like_every_path(settings, monkeypatch):
    """A writer holds the file past the lock wait once: ``btc run`` retries the load, as Prefect,
    Dagster and Airflow do, instead of failing the run."""
    settings = settings.replace(lock_timeout_s=0.3)
    with busy_once(monkeypatch, settings.db_path) as give_ups:
        report = run_cycle(settings)
    assert len(give_ups) == 1 and report.load.inserted == 2208
