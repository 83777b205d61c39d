"""Prefect 3 flows for the BTC pipeline: ``btc_pipeline`` (hourly) and ``btc_backfill`` (a window).

Each task is a thin wrapper around btc_core; Prefect adds what it is good at: retries only for
failures worth retrying, timeouts, a cache for extract, failover, artifacts, and visibility on
http://localhost:4200. Run it right here, no server needed::

    python flows/btc.py

Caching choice: extract uses ``INPUTS + TASK_SOURCE`` with an expiration (``BTC_EXTRACT_CACHE_S``,
default 5 min) far shorter than any schedule, so a retried flow reuses the price it fetched, and
the next scheduled run never gets a stale "current price". The inputs carry the time bucket of the
request and, for replay, the file's size and mtime: caching on the path alone would keep serving
the old file after it was replaced (a classic cache-key surprise).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.blocks.system import Secret
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.sync import concurrency
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task, exponential_backoff

from btc_core.chart import daily_avg_png, last_days, markdown_image, save_png
from btc_core.errors import RateLimited, is_retryable
from btc_core.notify import notify as send_notification
from btc_core.observations import Batch, Window, utc_now
from btc_core.pipeline import store_for
from btc_core.report import recent_days, run_summary_markdown
from btc_core.settings import Settings
from btc_core.sources import build_source, source_chain
from btc_core.store import LoadResult
from btc_core.transform import Latest, latest, refresh_daily_avg

SECRET_BLOCKS = {"coingecko_api_key": "btc-coingecko-api-key", "webhook_url": "btc-webhook-url"}
CHART_KEY = "btc-daily-avg-chart"
PLACEHOLDER = "unset"  # value of a Secret block created without a real secret
# Created by deployments/setup.py; held by DuckLake writers, or by any store via BTC_WRITER_LIMIT.
WRITER_LIMIT = "btc-duckdb-writer"


def runtime_settings(**overrides: object) -> Settings:
    """Settings from the worker's environment, with secrets from Secret blocks if configured.

    With ``BTC_SECRETS_FROM=env`` (strict hybrid) secrets never leave the worker's machine; with
    ``prefect-blocks`` they are read from the server, which stores them encrypted with a key it
    also holds: whoever holds the server database can read them.
    """
    settings = Settings.from_env(**overrides)
    if settings.secrets_from == "prefect-blocks":
        found = {}
        for field, block in SECRET_BLOCKS.items():
            value = Secret.load(block).get()
            if value and value != PLACEHOLDER:
                found[field] = value
        settings = replace(settings, **found)
    return settings


def retry_if_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry condition: 429, 5xx, timeouts, unreachable, busy store; never a bad payload."""
    try:
        state.result()
    except Exception as exc:
        return is_retryable(exc)
    return False


@task(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
    timeout_seconds=300,
    cache_policy=INPUTS + TASK_SOURCE,
    cache_expiration=timedelta(minutes=5),
    persist_result=True,
    task_run_name="extract-{source}",
)
def extract(source: str, window: Window | None, replay_file: str | None, version: str) -> Batch:
    """Fetch validated observations from one source (``version`` only shapes the cache key)."""
    settings = runtime_settings(source=source)
    try:
        batch = build_source(source, settings, Path(replay_file) if replay_file else None).fetch(
            window
        )
    except RateLimited as exc:  # honour Retry-After before Prefect's own backoff
        if exc.retry_after:
            time.sleep(min(exc.retry_after, settings.retry_max_wait_s))
        raise
    logger = get_run_logger()
    logger.info(batch.summary())
    for example in batch.examples:
        logger.warning("rejected %s", example)
    return batch


def writer_limit(settings: Settings) -> str:
    """The Prefect global concurrency limit writers hold: ``BTC_WRITER_LIMIT``, and always one
    for a DuckLake (shared by hosts, and without keys: concurrent upserts would duplicate)."""
    return settings.writer_limit or (WRITER_LIMIT if settings.store_url else "")


def writer_guard(settings: Settings) -> AbstractContextManager[object]:
    """Hold the writer limit, if any, around a write (load, daily_avg refresh, compaction).

    The limit is held by the server, so it works across machines. Off for a local DuckDB file:
    it needs only the core's file lock, and on a SQLite-backed server each lease call can meet
    "database is locked" and stall about 2 s. The lease is renewed while held; a writer killed
    with -9 frees it when it runs out, so it is the shortest Prefect allows (60 s).
    """
    name = writer_limit(settings)
    if not name:
        return nullcontext()
    return concurrency(name, occupy=1, strict=True, lease_duration=60)


@task(retries=3, retry_delay_seconds=2, retry_condition_fn=retry_if_transient, timeout_seconds=600)
def load(batch: Batch) -> LoadResult:
    """Upsert into the store; writers queue on the core's file lock and, for a store shared by
    several hosts (DuckLake, or ``BTC_WRITER_LIMIT``), on a Prefect global concurrency limit."""
    settings = runtime_settings()
    with writer_guard(settings):
        result = store_for(settings).load(batch)
    get_run_logger().info(result.summary())
    return result


@task(retries=3, retry_delay_seconds=2, retry_condition_fn=retry_if_transient, timeout_seconds=300)
def transform(first: date, last: date) -> Latest | None:
    """Recompute ``daily_avg`` for the days touched (holding the writer limit, like a load);
    return the newest two days."""
    settings = runtime_settings()
    store = store_for(settings)
    with writer_guard(settings):
        days = refresh_daily_avg(store, first, last)
    get_run_logger().info(f"daily_avg refreshed for {days} day(s), {first} .. {last}")
    return latest(store)


@task(retries=2, retry_delay_seconds=5, timeout_seconds=60)
def notify(current: Latest | None) -> str:
    """Send the notification; runs after the commit, so a failure never undoes the load."""
    return send_notification(runtime_settings(), current)


def cache_version(settings: Settings, source: str, window: Window | None) -> str:
    """What makes two extracts equal: the replay file's identity, or the request's time bucket."""
    if source == "replay":
        try:
            stat = settings.replay_file.stat()
        except OSError:  # extract itself reports the unreadable file, clearly
            return str(settings.replay_file)
        return f"{settings.replay_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if window is None:
        bucket = int(utc_now().timestamp() // settings.extract_cache_s)
        return f"latest@{bucket}"
    return str(window)


def backfill_extract(settings: Settings) -> Task:
    """``extract`` with the settings' retry policy and timeout, for windows of past days (their
    cache key is the window or the replay file's identity, so no expiration is needed)."""
    return extract.with_options(
        retries=settings.http_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_base_s),
        timeout_seconds=settings.task_timeout_s,
    )


def extract_with_failover(settings: Settings, window: Window | None) -> Batch:
    """Extract from each source of the chain in turn; any source failure fails over."""
    logger = get_run_logger()
    chain = [s.name for s in source_chain(settings)]
    options = extract.with_options(
        retries=settings.http_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.retry_base_s),
        cache_expiration=timedelta(seconds=settings.extract_cache_s),
        timeout_seconds=settings.task_timeout_s,
    )
    replay = str(settings.replay_file)
    for i, source in enumerate(chain):
        state = options(
            source, window, replay, cache_version(settings, source, window), return_state=True
        )
        if state.is_completed():
            batch = state.result()
            if i:
                batch.notes.append(f"failover from {', '.join(chain[:i])}")
            return batch
        if i == len(chain) - 1:
            return state.result()  # raises the last source's error
        logger.warning(
            f"{source} failed after retries ({state.message}); failing over to {chain[i + 1]}"
        )
    raise AssertionError("unreachable: the source chain is never empty")


def publish_run_artifacts(
    settings: Settings, batch: Batch, result: LoadResult, current: Latest | None
) -> None:
    """Artifacts on the run page. They live on the control plane: ``BTC_ARTIFACTS=summary``
    keeps prices off it (strict hybrid), ``none`` publishes nothing."""
    if settings.artifacts == "none":
        return
    prices = settings.artifacts == "full"
    create_markdown_artifact(
        run_summary_markdown(batch, result, current, prices=prices),
        key="btc-run-summary",
        description="What this run loaded",
    )
    if prices:
        create_table_artifact(
            recent_days(store_for(settings)),
            key="btc-daily-averages",
            description="Latest daily averages (USD), newest first",
        )
    publish_chart(settings)


def publish_chart(settings: Settings) -> None:
    """The 90-day chart: inline in an artifact (control plane), or a worker-side PNG and a link
    to it (``BTC_CHART=link``, strict hybrid), per :meth:`Settings.chart_mode`."""
    mode = settings.chart_mode()
    rows = last_days(store_for(settings)) if mode != "none" else []
    if not rows:
        return
    title = f"BTC daily average, {rows[0].day} .. {rows[-1].day}"
    png = daily_avg_png(rows)
    if mode == "inline":
        create_markdown_artifact(
            markdown_image(png, title), key=CHART_KEY, description=f"{title} (USD)"
        )
        return
    path = save_png(png, settings.charts_folder(), f"btc-daily-avg-{rows[-1].day}")
    url = f"{settings.chart_url.rstrip('/')}/{path.name}" if settings.chart_url else path.as_uri()
    create_link_artifact(
        url, link_text=f"{title} (on the worker's storage)", key=CHART_KEY, description=title
    )


@flow(name="btc-pipeline")
def btc_pipeline(source: str | None = None, lookback_hours: int | None = None) -> str:
    """One cycle: extract (retries, failover) -> load -> transform -> notify, plus artifacts.

    ``source`` overrides ``BTC_SOURCE``; ``lookback_hours`` asks live sources for a window
    instead of the latest price. Secrets are never parameters.
    """
    settings = runtime_settings(source=source)
    window = Window.last_hours(lookback_hours) if lookback_hours and source != "replay" else None
    batch = extract_with_failover(settings, window)
    result = load(batch)
    current = transform(result.first_day, result.last_day)
    notified = notify(current)
    publish_run_artifacts(settings, batch, result, current)
    return f"{result.summary()}; {notified}"


@flow(name="btc-backfill", task_runner=ThreadPoolTaskRunner(max_workers=4))
def btc_backfill(start: date, end: date, source: str | None = None, max_parallel: int = 4) -> str:
    """Load the UTC days ``start``..``end``: extracts mapped over days, ``max_parallel`` at a
    time; loads queue on the store's single-writer lock; then one transform over the window."""
    settings = runtime_settings(source=source)
    days = Window.days(start, end).day_list()
    options = backfill_extract(settings)
    loaded = 0
    replay = str(settings.replay_file)
    progress = create_progress_artifact(
        0.0, key="btc-backfill-progress", description="Days loaded (%)"
    )
    for offset in range(0, len(days), max_parallel):
        group = [Window.days(d, d) for d in days[offset : offset + max_parallel]]
        versions = [cache_version(settings, settings.source, w) for w in group]
        batches = options.map(unmapped(settings.source), group, unmapped(replay), versions)
        results = load.map(batches).result()
        loaded += sum(r.inserted + r.updated for r in results)
        done = offset + len(group)
        update_progress_artifact(progress, 100.0 * done / len(days))
        get_run_logger().info(f"backfill: {done} of {len(days)} days loaded")
    transform(start, end)
    publish_chart(settings)
    return f"backfilled {start} .. {end}: {loaded} observations new or updated"


if __name__ == "__main__":
    print(btc_pipeline())
