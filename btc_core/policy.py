"""The one retry policy and the one failover policy of every path: plain, Prefect, Dagster, Airflow.

**Retry.** A step that fails with a retryable error (429, 5xx, timeouts, unreachable source, busy
store: :func:`btc_core.errors.is_retryable`) is tried again, at most ``BTC_HTTP_RETRIES`` more
times, ``BTC_RETRY_BASE_S * 2**(n-1)`` seconds before retry *n* (capped at
``BTC_RETRY_MAX_WAIT_S``, no jitter); a 429 whose Retry-After asks for longer waits that long,
within the same cap. Any other failure is final at once. Each orchestrator declares these
numbers in its own way — Prefect task ``retries``/``retry_delay_seconds``/``retry_condition_fn``,
Dagster ``RetryRequested``, Airflow ``retries`` + ``retry_policy`` — and the plain runner uses
:func:`retrying`. The orchestrator waits :meth:`RetryPolicy.backoff`; the part of a Retry-After
beyond it is waited inside the step, so the total wait is the same everywhere.

**Failover.** One try of the extract step (:func:`extract_try`) asks the configured source. When that
fails for good — a failure no retry can cure, or a retryable one on the last try — it asks the
failover source once, in the same try; the batch then carries the note ``failover from <why>``.
So the order is the same on every path: retry the first source, then fail over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from btc_core.errors import RateLimited, SourceError, is_retryable
from btc_core.observations import Batch, Window
from btc_core.settings import Settings
from btc_core.sources import PriceSource, build_source

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries, and how long before each (see the module's docstring)."""

    retries: int
    base_s: float
    max_wait_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.http_retries, settings.retry_base_s, settings.retry_max_wait_s)

    def backoff(self, retry: int) -> float:
        """Seconds the orchestrator waits before retry number ``retry`` (1-based)."""
        return min(self.base_s * 2 ** (retry - 1), self.max_wait_s)

    def delays(self) -> list[float]:
        """Every backoff in order, as Prefect's ``retry_delay_seconds`` takes them."""
        return [self.backoff(n) for n in range(1, self.retries + 1)]

    def wait(self, retry: int, exc: BaseException) -> float:
        """The whole wait before retry ``retry`` after ``exc``: the backoff, or a longer
        Retry-After (capped like the backoff)."""
        backoff = self.backoff(retry)
        if isinstance(exc, RateLimited) and exc.retry_after:
            return max(backoff, min(exc.retry_after, self.max_wait_s))
        return backoff

    def retries_left(self, attempt: int, exc: BaseException) -> bool:
        """True when try number ``attempt`` (1-based) failing with ``exc`` is retried."""
        return is_retryable(exc) and attempt <= self.retries


def source_chain(settings: Settings, replay_file: Path | None = None) -> Sequence[PriceSource]:
    """The configured source, then the failover source (live sources only)."""
    chain = [build_source(settings.source, settings, replay_file)]
    if settings.source != "replay" and settings.failover_source not in ("none", settings.source):
        chain.append(build_source(settings.failover_source, settings))
    return chain


def extract_try(
    settings: Settings,
    window: Window | None = None,
    replay_file: Path | None = None,
    attempt: int = 1,
) -> Batch:
    """Try number ``attempt`` of the extract step, the same on every path.

    The first source of :func:`source_chain` is asked. A retryable failure while retries are
    left is raised for the orchestrator to retry (after waiting here whatever a Retry-After asks
    beyond the orchestrator's backoff). Otherwise the next sources are asked in turn, once each.
    """
    policy = RetryPolicy.from_settings(settings)
    chain = source_chain(settings, replay_file)
    failures: list[str] = []
    for i, source in enumerate(chain):
        try:
            batch = source.fetch(window)
        except SourceError as exc:
            if i == 0 and policy.retries_left(attempt, exc):
                surplus = policy.wait(attempt, exc) - policy.backoff(attempt)
                log.warning(
                    "%s failed (%s); retry %d of %d", source.name, exc, attempt, policy.retries
                )
                if surplus > 0:
                    time.sleep(surplus)
                raise
            failures.append(str(exc))
            if i == len(chain) - 1:
                if len(failures) > 1:
                    earlier = "; ".join(failures[:-1])
                    raise type(exc)(f"{exc} (after failover from: {earlier})") from None
                raise
            log.warning("%s gave up (%s); failing over to %s", source.name, exc, chain[i + 1].name)
            continue
        batch.notes += [f"failover from {f}" for f in failures]
        return batch
    raise AssertionError("unreachable: the source chain is never empty")


def retrying(policy: RetryPolicy, step: Callable[[int], T]) -> T:
    """Run ``step(attempt)`` with the retry policy, as the plain runner's orchestrator."""
    for attempt in Retrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(policy.retries + 1),
        wait=lambda state: policy.backoff(state.attempt_number),
        reraise=True,
    ):
        with attempt:
            return step(attempt.retry_state.attempt_number)
    raise AssertionError("unreachable: tenacity re-raises the last failure")
