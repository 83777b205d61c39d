"""The one Definitions object loads, validates, and shows the lineage and automation."""

from dagster import AssetKey, Definitions

from btc_core.settings import Settings
from dagster_port import definitions
from dagster_port.definitions import build
from dagster_port.resources import LiveSource, ReplaySource


def test_the_module_definitions_load_as_dagster_dev_loads_them() -> None:
    Definitions.validate_loadable(definitions.defs)


def test_definitions_for_replay_and_live_settings_validate(
    settings: Settings, live_settings: Settings
) -> None:
    replay, live = build(settings), build(live_settings)

    Definitions.validate_loadable(replay)
    Definitions.validate_loadable(live)
    assert isinstance(replay.resources["price_source"], ReplaySource)
    assert isinstance(live.resources["price_source"], LiveSource)


def test_lineage_is_inferred_from_the_assets(settings: Settings) -> None:
    graph = build(settings).resolve_asset_graph()

    assert graph.get(AssetKey("daily_avg")).parent_keys == {AssetKey("btc_price")}
    assert graph.get(AssetKey("daily_avg_by_day")).parent_keys == {AssetKey("btc_price_by_day")}
    checks = {key.name for key in graph.get(AssetKey("btc_price")).check_keys}
    assert checks == {"prices_positive", "no_duplicate_hours", "at_most_24_a_day"}


def test_every_schedule_sensor_and_job_is_registered(settings: Settings) -> None:
    defs = build(settings)

    assert {s.name for s in defs.schedules or []} == {"btc_hourly_schedule"}
    assert {s.name for s in defs.sensors or []} == {
        "btc_automation",
        "replay_file_sensor",
        "daily_avg_notification",
    }
    assert defs.resolve_job_def("btc_backfill").partitions_def is not None
