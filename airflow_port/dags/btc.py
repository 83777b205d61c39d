"""BTC price pipeline as an Airflow TaskFlow DAG: extract -> load -> transform -> notify.

Every step calls ``btc_core``; this file adds only what Airflow adds.

- **Schedule**: hourly, ``catchup=False`` (each run takes the latest price, like ``btc run``;
  history is loaded with ``btc backfill``), ``max_active_runs=1`` because DuckDB has one writer.
- **Retries**: Airflow owns them: 3 retries, exponential backoff (x2, capped at 15 min) starting
  from ``[core] default_task_retry_delay`` (300 s unless ``AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY``
  says otherwise). A try makes one request per source (``http_retries=0``; the failover source
  is still tried). Only what ``btc_core.errors.is_retryable`` accepts is retried (429, 5xx,
  timeouts, unreachable source, busy DuckDB); anything else (a wrong key, a drifted payload, bad
  settings, a bug) fails the task at once instead of burning retries.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from airflow.sdk import Connection, Variable, dag, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
from airflow.sdk.log import mask_secret

from btc_core import pipeline
from btc_core.errors import is_retryable
from btc_core.notify import notify as send_notification
from btc_core.observations import Batch
from btc_core.settings import Settings
from btc_core.store import LoadResult
from btc_core.transform import DayAvg, Latest

log = logging.getLogger(__name__)

COINGECKO_CONN_ID = "btc_coingecko"
WEBHOOK_VARIABLE = "btc_webhook_url"


def _coingecko_api_key() -> str | None:
    try:
        return Connection.get(COINGECKO_CONN_ID).password or None
    except AirflowNotFoundException:
        return None


def _settings() -> Settings:
    """``BTC_*`` settings with the secrets from Airflow; one request per source per try."""
    settings = Settings.from_env(
        coingecko_api_key=_coingecko_api_key(),
        webhook_url=Variable.get(WEBHOOK_VARIABLE, default=None),
        http_retries=0,
    )
    for secret in settings.secrets():
        mask_secret(secret)
    return settings


@contextmanager
def _fail_fast() -> Iterator[None]:
    """Leave retryable failures to Airflow's retries; fail the task at once on the others."""
    try:
        yield
    except AirflowException:
        raise
    except Exception as exc:
        if is_retryable(exc):
            raise
        raise AirflowFailException(f"{type(exc).__name__}: {exc} (not retryable)") from exc


def _batch_to_xcom(batch: Batch) -> dict[str, Any]:
    frame = batch.frame
    return {
        "source": batch.source,
        "ts": [ts.isoformat() for ts in frame["ts"]],
        "price_usd": frame["price_usd"].tolist(),
    }


def _batch_from_xcom(staged: dict[str, Any]) -> Batch:
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(staged["ts"]).astype("datetime64[us]"),
            "price_usd": pd.Series(staged["price_usd"], dtype="float64"),
        }
    )
    return Batch(staged["source"], frame)


def _latest_from_xcom(data: dict[str, Any] | None) -> Latest | None:
    if data is None:
        return None
    previous = data["previous"]
    return Latest(DayAvg(**data["current"]), DayAvg(**previous) if previous else None)


@dag(
    dag_id="btc_price",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=55),
    default_args={
        "retries": 3,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=15),
    },
    tags=["btc", "duckdb"],
    doc_md=__doc__,
)
def btc_price() -> None:
    """Hourly: fetch the BTC price, upsert it into DuckDB, refresh daily_avg, notify."""

    @task(multiple_outputs=False, show_return_value_in_logs=False)
    def extract() -> dict[str, Any]:
        """Observations from the configured source (failover included), as JSON columns."""
        with _fail_fast():
            batch = pipeline.extract(_settings())
        for note in batch.notes:
            log.warning("%s", note)
        return _batch_to_xcom(batch)

    @task(multiple_outputs=False)
    def load(staged: dict[str, Any]) -> dict[str, Any]:
        """Upsert the observations in one transaction; what changed."""
        with _fail_fast():
            result = pipeline.load(_settings(), _batch_from_xcom(staged))
        log.info("%s", result.summary())
        return asdict(result)

    @task(multiple_outputs=False)
    def transform(loaded: dict[str, Any]) -> dict[str, Any] | None:
        """Recompute daily_avg for the touched days; the latest two days."""
        with _fail_fast():
            latest = pipeline.transform(_settings(), LoadResult(**loaded))
        return None if latest is None else asdict(latest)

    @task
    def notify(latest: dict[str, Any] | None) -> str:
        """Send the latest daily average on the configured channel."""
        with _fail_fast():
            return send_notification(_settings(), _latest_from_xcom(latest))

    notify(transform(load(extract())))


btc_price()
