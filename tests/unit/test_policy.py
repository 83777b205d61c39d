"""The one retry policy: its numbers, as every orchestrator is configured from them."""

import pytest

from btc_core.errors import BadPayload, ConfigError, RateLimited, ServerError, StoreBusy
from btc_core.policy import RetryPolicy, source_chain
from btc_core.settings import Settings

POLICY = RetryPolicy(retries=3, base_s=2.0, max_wait_s=30.0)


def test_backoff_doubles_from_the_base_and_is_capped():
    assert POLICY.delays() == [2.0, 4.0, 8.0]
    assert RetryPolicy(6, 2.0, 30.0).delays() == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert RetryPolicy(0, 2.0, 30.0).delays() == []


def test_a_longer_retry_after_is_honoured_up_to_the_cap():
    assert POLICY.wait(1, RateLimited("429", retry_after=5)) == 5
    assert POLICY.wait(3, RateLimited("429", retry_after=5)) == 8  # the backoff is longer
    assert POLICY.wait(1, RateLimited("429", retry_after=3600)) == 30
    assert POLICY.wait(1, RateLimited("429")) == 2  # no header: the backoff
    assert POLICY.wait(1, ServerError("500")) == 2


@pytest.mark.parametrize(
    ("exc", "attempt", "retried"),
    [
        (ServerError("500"), 1, True),
        (ServerError("500"), 3, True),
        (ServerError("500"), 4, False),  # the last try: fail over instead
        (StoreBusy("busy"), 1, True),
        (BadPayload("drift"), 1, False),
        (ConfigError("typo"), 1, False),
        (RuntimeError("a bug"), 1, False),
    ],
)
def test_only_retryable_failures_with_tries_left_are_retried(exc, attempt, retried):
    assert POLICY.retries_left(attempt, exc) is retried


def test_the_numbers_come_from_the_settings():
    settings = Settings.from_env(
        env={"BTC_HTTP_RETRIES": "5", "BTC_RETRY_BASE_S": "0.5", "BTC_RETRY_MAX_WAIT_S": "3"}
    )
    assert RetryPolicy.from_settings(settings).delays() == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_failover_chain_is_for_live_sources_only():
    names = lambda **env: [s.name for s in source_chain(Settings.from_env(env=env))]  # noqa: E731
    assert names() == ["replay"]
    assert names(BTC_SOURCE="coingecko") == ["coingecko", "coinbase"]
    assert names(BTC_SOURCE="coinbase") == ["coinbase"]  # failover to itself: none
    assert names(BTC_SOURCE="coingecko", BTC_FAILOVER_SOURCE="none") == ["coingecko"]
