from pathlib import Path

import pytest

from btc_core.errors import ConfigError
from btc_core.settings import Settings


def test_env_variables_are_read_and_typed():
    s = Settings.from_env(
        env={
            "BTC_SOURCE": "coingecko",
            "BTC_LOCK_TIMEOUT_S": "2.5",
            "BTC_HTTP_RETRIES": "1",
            "BTC_DB_PATH": "/tmp/x.duckdb",
        }
    )
    assert (s.source, s.lock_timeout_s, s.http_retries, s.db_path) == (
        "coingecko",
        2.5,
        1,
        Path("/tmp/x.duckdb"),
    )


def test_dask_workers_default_and_environment():
    assert (
        Settings.from_env(env={}).dask_workers,
        Settings.from_env(env={"BTC_DASK_WORKERS": "4"}).dask_workers,
    ) == (2, 4)


def test_overrides_beat_environment():
    assert Settings.from_env(env={"BTC_SOURCE": "coingecko"}, source="replay").source == "replay"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BTC_SOURCE": "binance"},
            "^BTC_SOURCE='binance': input should be 'replay', 'coingecko' or 'coinbase'$",
        ),
        (
            {"BTC_LOCK_TIMEOUT_S": "soon"},
            "^BTC_LOCK_TIMEOUT_S='soon': input should be a valid number",
        ),
        (
            {"BTC_SECRETS_FROM": "vault"},
            "^BTC_SECRETS_FROM='vault': input should be 'env' or 'prefect-blocks'$",
        ),
        ({"BTC_READ_TIMEOUT_S": "0"}, "^BTC_READ_TIMEOUT_S='0': input should be greater than 0$"),
        (
            {"BTC_DASK_WORKERS": "0"},
            "^BTC_DASK_WORKERS='0': input should be greater than or equal to 1$",
        ),
        ({"BTC_HTTP_RETRIES": "1.5"}, "^BTC_HTTP_RETRIES='1.5': input should be a valid integer"),
        (
            {"BTC_MAX_PRICE_USD": "inf"},
            "^BTC_MAX_PRICE_USD='inf': input should be a finite number$",
        ),
        (
            {"BTC_LOCK_TIMEOUT_S": "nan"},
            "^BTC_LOCK_TIMEOUT_S='nan': input should be a finite number$",
        ),
        ({"BTC_NOTIFY_FILE": ""}, None),  # empty means unset: the default stays
    ],
)
def test_bad_configuration_is_one_clear_error(env, message):
    if message is None:
        assert Settings.from_env(env=env) == Settings.from_env(env={})
        return
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env=env)


def test_a_webhook_without_its_secret_is_refused():
    with pytest.raises(ConfigError, match="needs BTC_WEBHOOK_URL"):
        Settings.from_env(env={"BTC_NOTIFY": "webhook"}).require_secrets()


def test_secrets_never_show_in_repr():
    s = Settings.from_env(
        env={
            "BTC_COINGECKO_API_KEY": "CG-sekrit",
            "BTC_WEBHOOK_URL": "https://hooks.example/T0/B0/XyZ",
        }
    )
    assert "sekrit" not in repr(s) and "XyZ" not in str(s)
    assert s.secrets() == ["CG-sekrit", "https://hooks.example/T0/B0/XyZ"]
