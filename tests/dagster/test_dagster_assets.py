"""Materializing the assets: the output contract, load metadata, failures, partitioned backfills."""

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from btc_core.observations import Window
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings
from btc_core.transform import export
from dagster_port.assets import btc_price, btc_price_by_day, daily_avg, daily_avg_by_day
from dagster_port.resources import BtcResource, resources_for
from tests.busy import busy_once


def test_both_assets_give_the_plain_path_bytes(
    settings: Settings,
    resources: dict[str, BtcResource],
    instance: DagsterInstance,
    plain_export: Callable[[Settings], str],
) -> None:
    result = materialize([btc_price, daily_avg], resources=resources, instance=instance)

    assert result.success
    text = export(store_for(settings))
    assert text == plain_export(settings)
    rows = json.loads(text)
    assert len(rows) == 92 and rows == sorted(rows, key=lambda r: r["day"])
    assert rows[0] == {"avg_price_usd": 27192.14, "day": "2023-10-01", "n_obs": 24}


def test_btc_price_reports_what_it_loaded_and_is_idempotent(
    resources: dict[str, BtcResource], instance: DagsterInstance
) -> None:
    def load_metadata() -> dict[str, object]:
        result = materialize([btc_price], resources=resources, instance=instance)
        (event,) = result.asset_materializations_for_node("btc_price")
        return {key: value.value for key, value in event.metadata.items()}

    first, second = load_metadata(), load_metadata()

    assert first["inserted"] == 2208 and first["source"] == "replay"
    assert (first["first_day"], first["last_day"]) == ("2023-10-01", "2023-12-31")
    assert (second["inserted"], second["unchanged"]) == (0, 2208)


def test_the_asset_pages_tell_the_story(
    resources: dict[str, BtcResource], instance: DagsterInstance
) -> None:
    result = materialize([btc_price, daily_avg], resources=resources, instance=instance)

    (price,) = result.asset_materializations_for_node("btc_price")
    assert price.metadata["dagster/row_count"].value == 2208
    assert price.metadata["last_observation"].value == "2023-12-31T23:00:00"
    (event,) = result.asset_materializations_for_node("daily_avg")
    assert event.metadata["days_written"].value == 92
    assert event.metadata["dagster/row_count"].value == 92
    assert event.metadata["latest_day"].value == "2023-12-31"
    preview = event.metadata["preview"].value.splitlines()
    assert preview[0] == "| day | avg_price_usd | n_obs |"
    assert preview[2].startswith("| 2023-12-31 | ") and len(preview) == 2 + 7


def test_a_missing_replay_file_fails_with_btc_core_message(
    settings: Settings, instance: DagsterInstance, tmp_path: Path
) -> None:
    missing = settings.replace(replay_file=tmp_path / "nope.csv")

    result = materialize(
        [btc_price], resources=resources_for(missing), instance=instance, raise_on_error=False
    )

    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error.cause  # Dagster wraps the btc_core error
    assert error.cls_name == "InputError" and "nope.csv" in error.message


def test_a_range_of_days_backfills_in_one_run_like_the_plain_backfill(
    settings: Settings,
    resources: dict[str, BtcResource],
    instance: DagsterInstance,
    tmp_path: Path,
) -> None:
    result = materialize(
        [btc_price_by_day, daily_avg_by_day],
        resources=resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2023-11-01",
            "dagster/asset_partition_range_end": "2023-11-03",
        },
    )

    assert result.success
    days = {e.partition for e in result.asset_materializations_for_node("daily_avg_by_day")}
    assert days == {"2023-11-01", "2023-11-02", "2023-11-03"}
    plain = settings.replace(db_path=tmp_path / "plain.duckdb")
    backfill(plain, Window.days(*(date.fromisoformat(d) for d in ("2023-11-01", "2023-11-03"))))
    assert export(store_for(settings)) == export(store_for(plain))
    assert len(json.loads(export(store_for(settings)))) == 3


def test_a_busy_store_is_retried_like_on_every_path(
    settings: Settings, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds the DuckDB file past the lock wait once: the step asks Dagster for a
    retry (btc_core's policy) and the materialization succeeds, instead of failing for good."""
    busy = settings.replace(lock_timeout_s=0.3, retry_base_s=0.1)
    with busy_once(monkeypatch, busy.db_path) as give_ups:
        result = materialize([btc_price], resources=resources_for(busy), instance=instance)

    assert result.success and len(give_ups) == 1
    assert [e.step_key for e in result.all_events if e.is_step_up_for_retry] == ["btc_price"]


def test_summary_artifacts_keep_prices_off_the_asset_pages(
    settings: Settings, instance: DagsterInstance
) -> None:
    """BTC_ARTIFACTS=summary: counts and days on the asset page, no price (as Prefect's)."""
    summary = resources_for(settings.replace(artifacts="summary", chart="link"))
    result = materialize([btc_price, daily_avg], resources=summary, instance=instance)

    (event,) = result.asset_materializations_for_node("daily_avg")
    assert event.metadata["days_written"].value == 92
    assert event.metadata["latest_day"].value == "2023-12-31"
    assert not {"preview", "latest_avg_price_usd"} & set(event.metadata)
