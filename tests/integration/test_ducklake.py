"""The DuckLake store on a real PostgreSQL catalog and S3 (moto server) on 127.0.0.1: same SQL,
same export bytes as the local DuckDB file, duplicate-proof reads, compaction and inlining."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import pytest

from btc_core.doctor import check_store
from btc_core.errors import ConfigError, InputError, StoreBusy, is_retryable
from btc_core.lake import LakeStore
from btc_core.observations import Batch, Window
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings
from btc_core.sources import Replay
from btc_core.store import PriceStore
from btc_core.transform import export, refresh_daily_avg
from tests.crash import kill_inside_load
from tests.e2e.hosts import S3
from tests.lake import Lake, lake_s3, new_lake

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with lake_s3() as s3:
        yield s3


@pytest.fixture
def lake(s3: S3) -> Iterator[Lake]:
    with new_lake(s3) as lake:
        yield lake


def lake_settings(settings: Settings, lake: Lake, inline_rows: int = 100) -> Settings:
    return Settings.from_env(
        env=lake.env(inline_rows),
        db_path=settings.db_path,
        replay_file=settings.replay_file,
        notify="none",
        lock_timeout_s=30.0,
    )


def lake_store(settings: Settings, lake: Lake, inline_rows: int = 100) -> LakeStore:
    store = store_for(lake_settings(settings, lake, inline_rows))
    assert isinstance(store, LakeStore)
    return store


def count(store, sql: str = "SELECT count(*), count(DISTINCT ts) FROM observations"):
    with store.connect() as con:
        return con.execute(sql).fetchone()


def test_backfill_into_the_lake_exports_the_local_files_bytes(settings, lake):
    window = Window.days(date(2023, 10, 1), date(2023, 12, 31))
    backfill(settings, window)
    shared = lake_settings(settings, lake)
    backfill(shared, window)
    backfill(shared, window)  # a re-run changes nothing
    store = store_for(shared)
    assert count(store) == (2208, 2208)
    assert export(store) == export(store_for(settings))
    assert store.describe().startswith("DuckLake (catalog postgres:dbname=btc_lake_test_")
    assert lake.parquet_keys(), "the lake's data files are on S3"


def test_concurrent_upserts_duplicate_new_keys_and_reads_still_dedupe(
    settings, lake, tmp_path, monkeypatch
):
    """The engine fact that shapes the design: no primary keys, so two writers that MERGE the
    same new ts at once both insert it (MERGE does the same). daily_avg and the export still
    come out right."""
    batch = Replay(settings).fetch()
    days = Batch("replay", batch.ts[:72], batch.price_usd[:72])  # 2023-10-01 .. 03
    both_merged = threading.Barrier(2, timeout=60)
    hosts = [
        replace(lake_store(settings, lake), lock_path=tmp_path / f"host{i}" / "ducklake.lock")
        for i in range(2)
    ]
    errors: list[BaseException] = []

    def write(store: LakeStore) -> None:
        try:
            store.load(days)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(h,)) for h in hosts]
    with monkeypatch.context() as patch:  # both writers commit only once both have merged
        patch.setattr(PriceStore, "before_commit", lambda store: both_merged.wait())
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors
    assert count(hosts[0]) == (144, 72), "both writers inserted every new ts"

    local = store_for(settings)
    local.load(days)
    refresh_daily_avg(local)
    refresh_daily_avg(hosts[0])
    assert export(hosts[0]) == export(local)
    assert [d["n_obs"] for d in __import__("json").loads(export(hosts[0]))] == [24, 24, 24]


def test_a_later_duplicate_wins_in_daily_avg(settings, lake):
    store = lake_store(settings, lake)
    store.load(Replay(settings).fetch())
    with store.connect() as con:  # a duplicate of the first hour, ingested later, price 1.0
        con.execute(
            """INSERT INTO observations
               SELECT ts, 1.0, 'late', ingested_at + INTERVAL 1 HOUR
                 FROM observations ORDER BY ts LIMIT 1"""
        )
    refresh_daily_avg(store)
    local = store_for(settings.replace(db_path=settings.db_path.with_name("local.duckdb")))
    batch = Replay(settings).fetch()
    batch.price_usd[0] = 1.0  # the earliest observation: the batch is sorted
    local.load(batch)
    refresh_daily_avg(local)
    assert count(store) == (2209, 2208)
    assert export(store) == export(local)


def day_batches(settings: Settings, n: int) -> list[Batch]:
    source = Replay(settings)
    return [
        source.fetch(Window.days(date(2023, 10, d), date(2023, 10, d))) for d in range(1, n + 1)
    ]


@pytest.mark.parametrize("inline_rows", [0, 100])
def test_compaction_leaves_one_file_per_table_and_the_same_export(
    settings, lake, inline_rows, figure
):
    store = lake_store(settings, lake, inline_rows)
    for batch in day_batches(settings, 6):  # six hourly-sized writes of 24 rows
        store.load(batch)
        refresh_daily_avg(store, batch.first_day, batch.last_day)
    before = store.file_counts()
    expected = export(store)
    result = store.compact()
    figure(f"inline_rows={inline_rows}: {result.summary()}")
    if inline_rows:
        assert before == {"observations": 0, "daily_avg": 0}, "small writes stay in the catalog"
    else:
        assert before["observations"] == 6, "without inlining every write is a Parquet file"
    assert result.after == {"observations": 1, "daily_avg": 1}
    assert export(store) == expected
    assert count(store) == (144, 144)


def test_doctor_names_an_unreachable_catalog_without_its_password(tmp_path):
    env = {
        "BTC_STORE_URL": "ducklake:postgres:dbname=btc_no_such_db host=127.0.0.1 user=postgres "
        "password=pg-s3cret",
        "BTC_LAKE_DATA_PATH": str(tmp_path / "lake"),
    }
    check = check_store(Settings.from_env(env=env, db_path=tmp_path / "btc.duckdb"))
    assert not check.ok
    assert 'database "btc_no_such_db" does not exist' in check.detail
    assert "pg-s3cret" not in check.line()
    assert "password=***" in check.detail


def test_kill_9_between_upsert_and_refresh_leaves_the_lake_as_it_was(settings, lake):
    """The load and the refresh of its days are one DuckLake transaction too."""
    store = lake_store(settings, lake)
    first = Replay(settings).fetch(Window.days(date(2023, 10, 1), date(2023, 10, 31)))
    store.load(first)
    before = export(store)
    env = {**lake.env(), "BTC_DB_PATH": str(settings.db_path)}
    kill_inside_load(env)
    assert count(store) == (744, 744) and export(store) == before
    store.load(Replay(settings).fetch())
    local = store_for(settings)
    local.load(Replay(settings).fetch())
    assert count(store) == (2208, 2208) and export(store) == export(local)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"dbname": "btc_hostile_no_such_db"}, ConfigError, 'database "btc_hostile_no_such_db"'),
        ({"user": "btc_hostile_nobody"}, ConfigError, 'role "btc_hostile_nobody" does not exist'),
        ({"port": "4899"}, StoreBusy, "cannot reach DuckLake"),  # nothing listens there
    ],
)
def test_a_wrong_catalog_is_a_configuration_error_not_a_retry(
    settings, lake, change, error, message
):
    """#16: every error opening the lake used to be the retryable StoreBusy."""
    catalog = lake.env()["BTC_STORE_URL"].removeprefix("ducklake:postgres:")
    pairs = dict(pair.split("=", 1) for pair in catalog.split()) | change
    env = {
        **lake.env(),
        "BTC_STORE_URL": "ducklake:postgres:" + " ".join(f"{k}={v}" for k, v in pairs.items()),
    }
    store = store_for(Settings.from_env(env=env, db_path=settings.db_path))
    with pytest.raises(error, match=message) as raised:
        store.load(Replay(settings).fetch())
    assert is_retryable(raised.value) == (error is StoreBusy)


def test_a_missing_bucket_is_a_configuration_error_at_the_first_write(settings, lake):
    env = {**lake.env(0), "BTC_LAKE_DATA_PATH": "s3://btc-hostile-no-such-bucket/x/"}
    store = store_for(Settings.from_env(env=env, db_path=settings.db_path))
    with pytest.raises(ConfigError, match=r"cannot write DuckLake.*NOT FOUND") as raised:
        store.load(Replay(settings).fetch())
    assert not is_retryable(raised.value)


def test_reading_an_empty_lake_creates_no_catalog(settings, lake):
    store = lake_store(settings, lake)
    with pytest.raises(InputError, match="holds no btc tables yet"):
        export(store)
    sql = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", lake.dbname, "-qAtc", sql]
    tables = subprocess.run(psql, capture_output=True, text=True, check=True).stdout.strip()
    assert tables == "0", "a read attached the lake read-only: no DuckLake catalog tables"
