"""The live sources against the local fake API: real payload shapes, injected faults."""

import logging
import time
from dataclasses import replace
from datetime import date

import pytest

from btc_core.errors import (
    BadPayload,
    ClientError,
    RateLimited,
    ServerError,
    SourceTimeout,
    SourceUnreachable,
)
from btc_core.fake_api import FakeApi
from btc_core.observations import Window
from btc_core.pipeline import run_cycle
from btc_core.sources import Coinbase, CoinGecko, fetch_with_failover, fetch_with_retries

pytestmark = pytest.mark.integration
NOV = Window.days(date(2023, 11, 1), date(2023, 11, 2))


def test_coingecko_latest_and_window(live_settings, fake_api):
    latest = CoinGecko(live_settings).fetch()
    assert (
        len(latest.frame) == 1 and latest.frame["price_usd"].iloc[0] == 42280.14
    )  # last close of the slice
    window = CoinGecko(live_settings).fetch(NOV)
    assert len(window.frame) == 48
    query = fake_api.requests[-1]["query"]
    assert (query["vs_currency"], int(query["from"]), int(query["to"])) == (
        "usd",
        1698796800,
        1698969600,
    )
    assert fake_api.requests[-1]["headers"]["User-Agent"].startswith("btc-orchestration/")


def test_coinbase_latest_and_paged_window(live_settings, fake_api):
    assert len(Coinbase(live_settings).fetch().frame) == 1
    october = Window.days(date(2023, 10, 1), date(2023, 10, 31))  # 744 candles: 3 pages of <= 300
    assert len(Coinbase(live_settings).fetch(october).frame) == 744
    assert fake_api.hits("coinbase") == 4


def test_api_key_goes_in_the_header_and_nowhere_else(live_settings, fake_api, caplog):
    s = replace(live_settings, coingecko_api_key="CG-topsecret", coingecko_key_kind="pro")
    caplog.set_level(logging.DEBUG)
    fake_api.inject("coingecko", "401")
    with pytest.raises(ClientError) as err:
        CoinGecko(s).fetch()
    assert fake_api.requests[-1]["headers"]["x-cg-pro-api-key"] == "CG-topsecret"
    assert "topsecret" not in str(err.value) and "topsecret" not in caplog.text
    assert "topsecret" not in str(fake_api.requests[-1]["query"])


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("429", RateLimited, "HTTP 429 rate limited, retry after 0 s"),
        ("500", ServerError, "HTTP 500 server error"),
        ("502", ServerError, "HTTP 502"),
        ("503", ServerError, "HTTP 503"),
        ("timeout", SourceTimeout, "no answer within 1.0 s"),
        ("drop", SourceUnreachable, "connection failed"),
        ("truncated", BadPayload, "answer is not JSON"),
        ("html", BadPayload, "answer is not JSON \\(starts with '<html><body><h1>502 Bad Gateway"),
        ("missing_key", BadPayload, "missing key 'usd'"),
        ("nan", BadPayload, "non-finite price"),
        ("zero", BadPayload, "non-positive price"),
        ("negative", BadPayload, "non-positive price"),
        ("absurd", BadPayload, "implausible price"),
        ("stale", BadPayload, "stale timestamp"),
    ],
)
def test_each_fault_is_a_typed_error(live_settings, fake_api, fault, error, message):
    fake_api.inject("coingecko", fault)
    with pytest.raises(error, match=message):
        CoinGecko(live_settings).fetch()


def test_retryable_faults_are_retried_then_succeed(live_settings, fake_api):
    fake_api.inject("coingecko", "429", "503", "timeout")
    batch = fetch_with_retries(CoinGecko(live_settings), None, live_settings)
    assert len(batch.frame) == 1 and fake_api.hits("coingecko") == 4


def test_bad_payloads_are_not_retried(live_settings, fake_api):
    fake_api.inject("coingecko", "truncated")
    with pytest.raises(BadPayload):
        fetch_with_retries(CoinGecko(live_settings), None, live_settings)
    assert fake_api.hits("coingecko") == 1


def test_failover_to_the_second_exchange_after_retries(live_settings, fake_api):
    fake_api.inject("coingecko", "down")
    batch = fetch_with_failover(live_settings, NOV)
    assert batch.source == "coinbase" and len(batch.frame) == 48
    assert fake_api.hits("coingecko") == live_settings.http_retries + 1
    assert batch.notes == [
        "failover from coingecko GET /coins/bitcoin/market_chart/range: HTTP 503 server error"
    ]


def test_both_down_is_one_error_naming_both(live_settings, fake_api):
    fake_api.inject("coingecko", "down")
    fake_api.inject("coinbase", "down")
    with pytest.raises(ServerError, match=r"coinbase .* HTTP 503.*after failover from: coingecko"):
        fetch_with_failover(live_settings)


def test_a_failed_run_leaves_duckdb_unchanged(live_settings, fake_api):
    run_cycle(live_settings, NOV)
    with __import__("duckdb").connect(str(live_settings.db_path)) as con:
        before = con.execute("SELECT count(*), sum(price_usd) FROM observations").fetchone()
    fake_api.inject("coingecko", "missing_key")
    fake_api.inject("coinbase", "missing_key")
    with pytest.raises(BadPayload):
        run_cycle(live_settings, NOV)
    with __import__("duckdb").connect(str(live_settings.db_path)) as con:
        assert con.execute("SELECT count(*), sum(price_usd) FROM observations").fetchone() == before


def test_fake_api_latency_delays_every_answer(live_settings, replay_csv):
    """The benchmark's remote-API shape: every answer waits ``latency_s``, faults or not."""
    with FakeApi.start(replay_csv, latency_s=0.3) as api:
        settings = replace(live_settings, coingecko_url=f"{api.url}/coingecko")
        started = time.perf_counter()
        assert len(CoinGecko(settings).fetch(NOV).frame) == 48
        assert time.perf_counter() - started >= 0.3
