"""BTC_STORE_URL and its companions: the default is the local file, bad input is one line, and no
credential ever reaches a message, a repr or the SQL's log-facing description."""

from __future__ import annotations

import pytest

from btc_core.errors import ConfigError
from btc_core.lake import attach_sql, secret_sql
from btc_core.lake_config import LakeConfig
from btc_core.pipeline import store_for
from btc_core.settings import Settings
from btc_core.store import Store

GOOD = {
    "BTC_STORE_URL": "ducklake:postgres:dbname=btc host=127.0.0.1 user=btc password=pg-s3cret",
    "BTC_LAKE_DATA_PATH": "s3://btc-lake/prices",
    "BTC_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-s3cret",
}


def test_no_store_url_is_the_local_duckdb_file(tmp_path):
    store = store_for(Settings.from_env(env={}, db_path=tmp_path / "b.duckdb"))
    assert isinstance(store, Store)
    assert store.path == tmp_path / "b.duckdb"


def test_a_ducklake_url_is_parsed_with_the_standard_aws_variables():
    lake = LakeConfig.from_settings(Settings.from_env(env=GOOD))
    assert lake.catalog == "dbname=btc host=127.0.0.1 user=btc password=pg-s3cret"
    assert lake.data_path == "s3://btc-lake/prices/"
    assert lake.s3 is not None
    assert (lake.s3.endpoint, lake.s3.use_ssl, lake.s3.region) == (
        "127.0.0.1:9000",
        False,
        "us-east-1",
    )
    assert lake.inline_rows == 100


def test_btc_aws_variables_win_over_the_standard_ones():
    env = {**GOOD, "BTC_AWS_ACCESS_KEY_ID": "AKIAOTHER", "AWS_DEFAULT_REGION": "eu-west-1"}
    lake = LakeConfig.from_settings(Settings.from_env(env=env))
    assert lake.s3 is not None
    assert (lake.s3.key_id, lake.s3.region) == ("AKIAOTHER", "eu-west-1")


def test_no_credential_in_repr_describe_or_settings():
    settings = Settings.from_env(env=GOOD)
    lake = LakeConfig.from_settings(settings)
    for text in (repr(settings), repr(lake), lake.describe(), repr(lake.s3)):
        assert "pg-s3cret" not in text
        assert "aws-s3cret" not in text
    assert "password=***" in lake.describe()


def test_the_sql_quotes_what_it_embeds():
    env = {**GOOD, "AWS_SECRET_ACCESS_KEY": "it's"}
    lake = LakeConfig.from_settings(Settings.from_env(env=env, lake_inline_rows=0))
    assert "SECRET 'it''s'" in secret_sql(lake)
    assert "USE_SSL false" in secret_sql(lake)
    assert attach_sql(lake) == (
        "ATTACH 'ducklake:postgres:dbname=btc host=127.0.0.1 user=btc password=pg-s3cret' "
        "AS lake (DATA_PATH 's3://btc-lake/prices/')"
    )


def test_a_local_data_folder_needs_no_s3():
    env = {"BTC_STORE_URL": GOOD["BTC_STORE_URL"], "BTC_LAKE_DATA_PATH": "/mnt/lake"}
    lake = LakeConfig.from_settings(Settings.from_env(env=env))
    assert (lake.data_path, lake.s3) == ("/mnt/lake/", None)
    assert "DATA_INLINING_ROW_LIMIT 100" in attach_sql(lake)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"BTC_STORE_URL": "postgres://btc@db/btc"},
            r"must be empty \(local DuckDB file\) or ducklake:postgres:",
        ),
        ({"BTC_STORE_URL": "ducklake:sqlite:/tmp/x"}, "or ducklake:postgres:<libpq>"),
        ({"BTC_STORE_URL": "ducklake:postgres:host=db user=btc"}, "needs dbname="),
        ({"BTC_STORE_URL": "ducklake:postgres:dbname=btc host"}, "'host' is not one"),
        ({"BTC_LAKE_DATA_PATH": ""}, "set BTC_LAKE_DATA_PATH"),
        ({"BTC_LAKE_DATA_PATH": "lake/data"}, "must be s3://bucket/prefix/ or an absolute folder"),
        ({"BTC_LAKE_DATA_PATH": "s3:///prefix"}, "names no bucket"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ({"BTC_S3_ENDPOINT_URL": "127.0.0.1:9000"}, r"must be http\(s\)://host\[:port\]"),
        ({"BTC_LAKE_INLINE_ROWS": "-1"}, "BTC_LAKE_INLINE_ROWS='-1': input should be greater"),
        (
            {"BTC_LAKE_INLINE_ROWS": "many"},
            "BTC_LAKE_INLINE_ROWS='many': input should be a valid int",
        ),
    ],
)
def test_bad_lake_settings_are_one_line_without_secrets(change, message):
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env(env={**GOOD, **change})
    text = str(caught.value)
    assert "\n" not in text
    assert "pg-s3cret" not in text and "aws-s3cret" not in text
