"""BTC price pipeline as an Airflow TaskFlow DAG: extract -> load -> notify.

Every step calls ``btc_core``; this file adds only what Airflow adds.

- **Schedule**: hourly, ``catchup=False`` (each run takes the latest price, like ``btc run``;
  history is loaded with ``btc backfill``), ``max_active_runs=1`` because DuckDB has one writer.
- **Retries**: btc_core's retry policy (btc_core/policy.py) in Airflow's terms: ``retries`` is
  ``BTC_HTTP_RETRIES``, and the task's ``retry_policy`` (Airflow 3.3) retries only what
  ``btc_core.errors.is_retryable`` accepts (429, 5xx, timeouts, unreachable source, busy DuckDB)
  after the policy's backoff; anything else (a wrong key, a drifted payload, bad settings, a bug)
  fails the task at once instead of burning retries. Extract passes its try number to the core,
  which fails over to the second exchange on the last try, as on every path.
- **Load**: upserts the observations and refreshes the daily averages of the days they touch in
  one transaction, so a crash never leaves ``daily_avg`` stale.
- **Secrets**: the CoinGecko API key is the password of the Connection ``btc_coingecko``, the
  webhook URL the Variable ``btc_webhook_url``; both may come from the environment
  (``AIRFLOW_CONN_BTC_COINGECKO``, ``AIRFLOW_VAR_BTC_WEBHOOK_URL``) and are masked in task logs.
  Everything else is a ``BTC_*`` variable read by ``Settings.from_env``.
- **XCom**: values stay JSON. The observations travel from extract to load as two columns (one
  row per hour live, ~70 kB for the 2,208-row replay file), so a failed load retries without
  fetching again; no pyarrow, no pickling, no allow-listed classes. Multi-year backfills do not
  go through this DAG.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from airflow.sdk import Connection, Variable, dag, get_current_context, task
from airflow.sdk.definitions.context import Context
from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from btc_core import pipeline, policy
from btc_core.errors import is_retryable
from btc_core.observations import Batch
from btc_core.settings import Settings

log = logging.getLogger(__name__)

COINGECKO_CONN_ID = "btc_coingecko"
WEBHOOK_VARIABLE = "btc_webhook_url"


def _coingecko_api_key() -> str | None:
    try:
        return Connection.get(COINGECKO_CONN_ID).password or None
    except AirflowNotFoundException:
        return None


def _settings() -> Settings:
    """``BTC_*`` settings with the secrets from Airflow (masked in task logs)."""
    settings = Settings.from_env(
        coingecko_api_key=_coingecko_api_key(),
        webhook_url=Variable.get(WEBHOOK_VARIABLE, default=None),
    )
    for secret in settings.secrets():
        mask_secret(secret)
    return settings


class BtcRetryPolicy(RetryPolicy):
    """btc_core's retry policy: retry what a retry can cure, after the policy's backoff (read
    when the try fails, so ``BTC_RETRY_*`` of the worker apply); fail the rest at once."""

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        if not is_retryable(exception):
            return RetryDecision.fail(f"{type(exception).__name__} is not retryable")
        backoff = policy.RetryPolicy.from_settings(Settings.from_env()).backoff(try_number)
        return RetryDecision.retry(timedelta(seconds=backoff), "retryable failure")


def _batch_to_xcom(batch: Batch) -> dict[str, Any]:
    """The batch as JSON: its two columns and its value-free accounting (counts, notes)."""
    return {
        "source": batch.source,
        "ts": [ts.isoformat() for ts in batch.ts.tolist()],
        "price_usd": batch.price_usd.tolist(),
        "received": batch.received,
        "rejected": batch.rejected,
        "duplicates": batch.duplicates,
        "notes": batch.notes,
    }


def _batch_from_xcom(staged: dict[str, Any]) -> Batch:
    ts = np.array(staged["ts"], dtype="datetime64[us]")
    price_usd = np.array(staged["price_usd"], dtype="float64")
    counts = {k: staged[k] for k in ("received", "rejected", "duplicates", "notes")}
    return Batch(staged["source"], ts, price_usd, **counts)


@dag(
    dag_id="btc_price",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=55),
    default_args={
        "retries": Settings.from_env().http_retries,
        "retry_policy": BtcRetryPolicy(),
    },
    tags=["btc", "duckdb"],
    doc_md=__doc__,
)
def btc_price() -> None:
    """Hourly: fetch the BTC price, upsert it into DuckDB, refresh daily_avg, notify."""

    @task(multiple_outputs=False, show_return_value_in_logs=False)
    def extract() -> dict[str, Any]:
        """Observations from the configured source (this try; failover on the last), as JSON
        columns."""
        attempt = get_current_context()["ti"].try_number
        batch = policy.extract_try(_settings(), attempt=attempt)
        for level, line in batch.log_lines():
            log.log(level, "%s", line)
        return _batch_to_xcom(batch)

    @task(multiple_outputs=False)
    def load(staged: dict[str, Any]) -> dict[str, Any]:
        """Upsert the observations and refresh their days' averages in one transaction."""
        result = pipeline.load(_settings(), _batch_from_xcom(staged))
        log.info("%s", result.summary())
        return asdict(result)

    @task
    def notify(loaded: dict[str, Any]) -> str:
        """Send the latest daily average on the configured channel."""
        settings = _settings()
        return pipeline.notify(settings, pipeline.latest(settings))

    notify(load(extract()))


btc_price()
