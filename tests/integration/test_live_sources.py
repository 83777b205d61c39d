"""The live sources against the local fake API: real payload shapes, injected faults."""

import logging
import time
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
from btc_core.pipeline import extract, run_cycle
from btc_core.policy import extract_try
from btc_core.sources import Coinbase, CoinGecko

pytestmark = pytest.mark.integration
NOV = Window.days(date(2023, 11, 1), date(2023, 11, 2))


def test_coingecko_latest_and_window(live_settings, fake_api):
    latest = CoinGecko(live_settings).fetch()
    assert latest.kept == 1 and latest.price_usd[0] == 42280.14  # last close of the slice
    window = CoinGecko(live_settings).fetch(NOV)
    assert window.kept == 48
    query = fake_api.requests[-1]["query"]
    assert (query["vs_currency"], int(query["from"]), int(query["to"])) == (
        "usd",
        1698796800,
        1698969600,
    )
    assert fake_api.requests[-1]["headers"]["User-Agent"].startswith("btc-orchestration/")


def test_coinbase_latest_and_paged_window(live_settings, fake_api):
    assert Coinbase(live_settings).fetch().kept == 1
    october = Window.days(date(2023, 10, 1), date(2023, 10, 31))  # 744 candles: 3 pages of <= 300
    assert Coinbase(live_settings).fetch(october).kept == 744
    assert fake_api.hits("coinbase") == 4


def test_api_key_goes_in_the_header_and_nowhere_else(live_settings, fake_api, caplog):
    s = live_settings.replace(coingecko_api_key="CG-topsecret", coingecko_key_kind="pro")
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
        ("truncated", BadPayload, r"answer is not JSON \(application/json, \d+ bytes\)$"),
        ("html", BadPayload, r"answer is not JSON \(text/html, 60 bytes\)$"),
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
    batch = extract(live_settings)
    assert batch.kept == 1 and fake_api.hits("coingecko") == 4
    assert fake_api.hits("coinbase") == 0 and batch.notes == []


def test_a_bad_payload_fails_over_at_once(live_settings, fake_api):
    fake_api.inject("coingecko", "truncated")
    batch = extract(live_settings)
    assert (fake_api.hits("coingecko"), fake_api.hits("coinbase")) == (1, 1)
    assert batch.source == "coinbase"
    assert batch.notes == [
        "failover from coingecko GET /simple/price: answer is not JSON (application/json, 30 bytes)"
    ]


def test_failover_to_the_second_exchange_after_retries(live_settings, fake_api):
    fake_api.inject("coingecko", "down")
    batch = extract(live_settings, NOV)
    assert batch.source == "coinbase" and batch.kept == 48
    assert fake_api.hits("coingecko") == live_settings.http_retries + 1
    assert fake_api.hits("coinbase") == 1
    assert batch.notes == [
        "failover from coingecko GET /coins/bitcoin/market_chart/range: HTTP 503 server error"
    ]


def test_a_try_with_retries_left_raises_for_the_orchestrator(live_settings, fake_api):
    """What each orchestrator's retry runs: a retryable failure is raised while retries are
    left (no failover yet), and fails over on the last try."""
    fake_api.inject("coingecko", "down")
    for attempt in range(1, live_settings.http_retries + 1):
        with pytest.raises(ServerError):
            extract_try(live_settings, NOV, attempt=attempt)
    assert fake_api.hits("coinbase") == 0
    last = extract_try(live_settings, NOV, attempt=live_settings.http_retries + 1)
    assert last.source == "coinbase" and fake_api.hits("coinbase") == 1


def test_both_down_is_one_error_naming_both(live_settings, fake_api):
    fake_api.inject("coingecko", "down")
    fake_api.inject("coinbase", "down")
    with pytest.raises(ServerError, match=r"coinbase .* HTTP 503.*after failover from: coingecko"):
        extract(live_settings)


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
        settings = live_settings.replace(coingecko_url=f"{api.url}/coingecko")
        started = time.perf_counter()
        assert CoinGecko(settings).fetch(NOV).kept == 48
        assert time.perf_counter() - started >= 0.3


def test_a_retry_after_longer_than_the_backoff_is_waited_on_every_path(live_settings, fake_api):
    """The orchestrator waits the backoff; the step itself waits what the server asked beyond
    it, so the total is the server's Retry-After whatever runs the step."""
    fake_api.inject("coingecko", "429:1")
    settings = live_settings.replace(retry_base_s=0.01, retry_max_wait_s=30)
    started = time.perf_counter()
    batch = extract(settings)
    assert time.perf_counter() - started >= 1.0
    assert fake_api.hits("coingecko") == 2 and batch.source == "coingecko"
