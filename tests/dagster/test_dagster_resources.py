"""Resources: one interface for live and replay sources, btc_core settings in, secrets as EnvVar."""

import pytest
from dagster import DagsterInstance, EnvVar, materialize

from btc_core.errors import ConfigError
from btc_core.fake_api import FakeApi
from btc_core.settings import Settings
from dagster_port.assets import btc_price
from dagster_port.resources import (
    DuckDBStore,
    LiveSource,
    Notifier,
    ReplaySource,
    from_settings,
    resources_for,
)


def test_the_source_follows_the_settings(settings: Settings, live_settings: Settings) -> None:
    replay, live = resources_for(settings), resources_for(live_settings)

    assert isinstance(replay["price_source"], ReplaySource)
    assert replay["price_source"].replay_file == str(settings.replay_file)
    assert isinstance(live["price_source"], LiveSource)
    assert live["price_source"].coingecko_url == live_settings.coingecko_url
    assert replay["duckdb"].db_path == str(settings.db_path)


def test_resource_fields_round_trip_through_btc_core_settings(live_settings: Settings) -> None:
    source = from_settings(LiveSource, live_settings)

    assert source.settings() == Settings().replace(
        **{name: getattr(live_settings, name) for name in LiveSource.model_fields}
    )
    assert from_settings(DuckDBStore, live_settings).store().path == live_settings.db_path


def test_secrets_become_env_var_references(settings: Settings) -> None:
    with_secrets = settings.replace(coingecko_api_key="k-123", webhook_url="https://hook/x")

    source = from_settings(LiveSource, with_secrets)
    notifier = from_settings(Notifier, with_secrets)

    assert source.coingecko_api_key == EnvVar("BTC_COINGECKO_API_KEY")
    assert notifier.webhook_url == EnvVar("BTC_WEBHOOK_URL")
    assert from_settings(LiveSource, settings).coingecko_api_key == ""


def test_btc_core_checks_the_resource_config() -> None:
    with pytest.raises(ConfigError, match="BTC_SOURCE='kraken': input should be"):
        LiveSource(source="kraken").settings()


def test_a_live_run_sends_the_key_from_the_environment_and_never_shows_it(
    live_settings: Settings,
    fake_api: FakeApi,
    instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BTC_COINGECKO_API_KEY", "k-secret-123")
    resources = resources_for(live_settings.replace(coingecko_api_key="from the environment"))

    result = materialize([btc_price], resources=resources, instance=instance)

    assert fake_api.requests[-1]["headers"]["x-cg-demo-api-key"] == "k-secret-123"
    ui_config = resources["price_source"].get_resource_definition().config_schema
    shown = ui_config.default_value_as_json_str + repr(instance.all_logs(result.run_id))
    assert '"coingecko_api_key": {"env": "BTC_COINGECKO_API_KEY"}' in shown
    assert "k-secret-123" not in shown


def test_a_live_source_fails_over_to_coinbase(
    live_settings: Settings, fake_api: FakeApi, instance: DagsterInstance
) -> None:
    fake_api.inject("coingecko", "down")

    result = materialize([btc_price], resources=resources_for(live_settings), instance=instance)

    (event,) = result.asset_materializations_for_node("btc_price")
    assert event.metadata["source"].value == "coinbase"
    assert "failover from coingecko" in event.metadata["notes"].value
