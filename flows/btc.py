"""Prefect 3 flows for the BTC pipeline: ``btc_pipeline`` (hourly) and ``btc_backfill`` (a window).

Each task is a thin wrapper around btc_core; Prefect adds what it is good at: retries declared
from the one retry policy (btc_core/policy.py), timeouts, a cache for extract, artifacts, and
visibility on http://localhost:4200. Run it right here, no server needed::

    python flows/btc.py

Caching: extract's key is :func:`extract_cache_key` (what makes two extracts equal) plus the
task's source code, expiring after ``BTC_EXTRACT_CACHE_S`` (default 5 min, far shorter than any
schedule): a retried flow reuses the price it fetched, the next scheduled run never gets a stale
"current price", and a replaced replay file is read again (a key on its path alone would not).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import date, timedelta
from typing import Annotated, Any, TypeVar

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import (
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_table_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.blocks.system import Secret
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.asyncio import concurrency
from prefect.context import TaskRunContext
from prefect.runtime import task_run as current_task_run
from prefect.settings import PREFECT_API_URL
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task
from prefect.utilities.annotations import quote
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import Field

from btc_core import pipeline
from btc_core.chart import draw, markdown_image, save_png
from btc_core.errors import is_retryable
from btc_core.exit import skip_exit_collection
from btc_core.observations import Batch, Window, utc_now
from btc_core.policy import RetryPolicy, extract_try
from btc_core.report import (
    RUN_COUNTS_KEY,
    Snapshot,
    run_counts,
    run_summary_markdown,
    snapshot,
)
from btc_core.settings import Settings
from btc_core.store import LoadResult
from btc_core.transform import DayAvg, write_atomically
from flows.boundary import guarded

T = TypeVar("T")
SECRET_BLOCKS = {"coingecko_api_key": "btc-coingecko-api-key", "webhook_url": "btc-webhook-url"}
CHART_KEY = "btc-daily-avg-chart"
PLACEHOLDER = "unset"  # value of a Secret block created without a real secret
# Created by deployments/setup.py; held by DuckLake writers, or by any store via BTC_WRITER_LIMIT.
WRITER_LIMIT = "btc-duckdb-writer"
# Parameter bounds, checked by Prefect (pydantic) before a run starts and shown in the UI's form.
MAX_PARALLEL = 32
MAX_LOOKBACK_HOURS = 24 * 366


async def off_loop(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, a blocking call into the core, in a daemon thread of its own, with the
    run's context (its logger). The await can be cancelled (a task timeout, SIGTERM), and a
    call left behind never holds the process open: asyncio.to_thread's pool threads are joined
    at exit, so a run stopped during a hung HTTP read would wait for it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():  # cancelled meanwhile
            return
        if error is None:
            done.set_result(result)
        else:
            done.set_exception(error)

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(call, *args), None)
        except BaseException as exc:
            outcome = (None, exc)
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(
        target=work, name=f"btc-{getattr(call, '__name__', 'call')}", daemon=True
    ).start()
    return await done


async def runtime_settings(**overrides: object) -> Settings:
    """Settings from the worker's environment, with secrets from Secret blocks if configured.

    Read once per flow run and handed to the tasks. With ``BTC_SECRETS_FROM=env`` (strict
    hybrid) secrets never leave the worker's machine; with ``prefect-blocks`` they are read from
    the server, which stores them encrypted with a key it also holds: whoever holds the server
    database can read them.
    """
    settings = Settings.from_env(None, **overrides)
    if settings.secrets_from == "prefect-blocks":
        found = {}
        for field, block in SECRET_BLOCKS.items():
            secret: Secret[str] = await Secret.aload(block)
            value = secret.get()
            if value and value != PLACEHOLDER:
                found[field] = value
        settings = settings.replace(**found)
    return settings


async def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry condition of every task: what :func:`btc_core.errors.is_retryable` accepts (429,
    5xx, timeouts, unreachable, busy store); never a bad payload, a wrong key or a bug."""
    try:
        await state.aresult()
    except Exception as exc:
        return is_retryable(exc)
    return False


def with_policy(step: Task[..., Any], settings: Settings) -> Task[..., Any]:
    """``step`` with the retry policy's numbers and the task timeout of ``settings``."""
    policy = RetryPolicy.from_settings(settings)
    return step.with_options(
        retries=policy.retries,
        retry_delay_seconds=policy.delays(),
        timeout_seconds=settings.task_timeout_s,
    )


def extract_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """What makes two extracts equal: the source chain and the window, plus the replay file's
    identity (path, size, mtime), or for live sources the APIs asked and, for "the latest"
    price, its time bucket."""
    settings: Settings = parameters["settings"]
    window: Window | None = parameters["window"]
    what = f"{settings.source}>{settings.failover_source}:{window}"
    if settings.source == "replay":
        path = settings.replay_file
        try:
            stat = path.stat()
        except OSError:  # extract itself reports the unreadable file, clearly
            return f"{what}:{path}:unreadable"
        what += f":{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    else:
        what += f":{settings.coingecko_url}:{settings.coinbase_url}"
        if window is None:
            what += f":latest@{int(utc_now().timestamp() // settings.extract_cache_s)}"
    return hashlib.sha256(what.encode()).hexdigest()


@task(
    retry_condition_fn=retry_if_transient,
    cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=extract_cache_key),
    persist_result=True,
)
@guarded
async def extract(settings: Settings, window: Window | None) -> Batch:
    """Observations from the configured source; each retry asks it again, the last try (or a
    failure no retry cures) fails over (btc_core.policy). Rejected rows are logged by line and
    reason only: the values stay on the worker."""
    attempt = current_task_run.run_count
    batch = await off_loop(extract_try, settings, window, None, attempt)
    logger = get_run_logger()
    for level, line in batch.log_lines():
        logger.log(level, line)
    return batch


def writer_limit(settings: Settings) -> str:
    """The Prefect global concurrency limit writers hold: ``BTC_WRITER_LIMIT``, and always one
    for a DuckLake (shared by hosts, and without keys: concurrent upserts would duplicate)."""
    return settings.writer_limit or (WRITER_LIMIT if settings.store_url.get_secret_value() else "")


def writer_guard(settings: Settings) -> AbstractAsyncContextManager[object]:
    """Hold the writer limit, if any, around a write (load, compaction).

    The limit is held by the server, so it works across machines. Off for a local DuckDB file:
    it needs only the core's file lock, and on a SQLite-backed server each lease call can meet
    "database is locked" and stall about 2 s. The lease is renewed while held; a writer killed
    with -9 frees it when it runs out, so it is the shortest Prefect allows (60 s).
    """
    name = writer_limit(settings)
    if not name:
        return nullcontext()
    return concurrency(name, occupy=1, strict=True, lease_duration=60)


@task(retry_condition_fn=retry_if_transient)
@guarded
async def load(settings: Settings, batch: Batch) -> LoadResult:
    """Upsert the observations and refresh the daily averages of the days they touch, in one
    transaction. Writers queue on the core's file lock and, for a store shared by several hosts
    (DuckLake, or ``BTC_WRITER_LIMIT``), on a Prefect global concurrency limit."""
    async with writer_guard(settings):
        result = await off_loop(pipeline.load, settings, batch)
    get_run_logger().info(result.summary())
    return result


@task(retry_condition_fn=retry_if_transient)
@guarded
async def notify(settings: Settings, batch: Batch, result: LoadResult) -> str:
    """Tell people: the message on the configured channel, and the run page's artifacts. Runs
    after the commit, so a failure never undoes the load."""
    seen = await off_loop(snapshot, pipeline.store_for(settings))
    sent = await off_loop(pipeline.notify, settings, seen.latest)
    await publish_run_artifacts(settings, batch, result, seen)
    return sent


async def publish_run_artifacts(
    settings: Settings, batch: Batch, result: LoadResult, seen: Snapshot
) -> None:
    """Artifacts on the run page, sent at once (concurrently, not one after another); the
    ``btc-run-counts`` table is what the metrics exporter reads. They live on the
    control plane: ``BTC_ARTIFACTS=summary`` keeps prices off it (strict hybrid), ``none``
    publishes nothing."""
    if settings.artifacts == "none":
        return
    prices = settings.artifacts == "full"
    sends = [
        acreate_markdown_artifact(
            run_summary_markdown(batch, result, seen.latest, prices=prices),
            key="btc-run-summary",
            description="What this run loaded",
        ),
        acreate_table_artifact(
            [run_counts(batch, result)],
            key=RUN_COUNTS_KEY,
            description="This run's row counts (read by the metrics exporter)",
        ),
        publish_chart(settings, seen.chart),
    ]
    if prices:
        table = "Latest daily averages (USD), newest first"
        sends.append(
            acreate_table_artifact(seen.recent, key="btc-daily-averages", description=table)
        )
    await asyncio.gather(*sends)


async def publish_chart(settings: Settings, rows: list[DayAvg]) -> None:
    """The 90-day chart: inline in an artifact (control plane), or a worker-side PNG and a link
    to it (``BTC_CHART=link``, strict hybrid), per :meth:`Settings.chart_mode`.

    It shows complete days only, so it changes once a day: it is drawn once per change (a
    worker-side cache next to the DuckDB file) and published once per change to each server
    (the marker ``.chart-published`` beside the cache). The keyed artifact always shows the
    current chart, and the control plane does not store the same 50 KB PNG (and its copy in
    the events table) every hour; the runs in between publish their summary only."""
    mode = settings.chart_mode()
    if mode == "none" or not rows:
        return
    folder = settings.charts_folder()
    chart = await off_loop(draw, rows, folder)
    marker = folder / ".chart-published"
    published = f"{chart.key} {mode} {settings.chart_url} {PREFECT_API_URL.value()}"
    if marker.is_file() and marker.read_text() == published:
        return
    title, png = chart.title, chart.png
    if mode == "inline":
        await acreate_markdown_artifact(
            markdown_image(png, title), key=CHART_KEY, description=f"{title} (USD)"
        )
    else:
        path = save_png(png, folder, f"btc-daily-avg-{chart.newest}")
        url = (
            f"{settings.chart_url.rstrip('/')}/{path.name}" if settings.chart_url else path.as_uri()
        )
        await acreate_link_artifact(
            url, link_text=f"{title} (on the worker's storage)", key=CHART_KEY, description=title
        )
    write_atomically(marker, published.encode())


@task
@guarded
async def chart(settings: Settings) -> None:
    """Publish the 90-day chart (after a backfill)."""
    seen = await off_loop(snapshot, pipeline.store_for(settings))
    await publish_chart(settings, seen.chart)


# Async on purpose: Prefect's sync flow engine joins the heartbeat thread when the run ends, and
# that thread sleeps in 1-second slices (about +0.5-1 s on every run); the async engine does not
# join it, and heartbeats still run (crash detection). The tasks are async too: they share the
# flow's API client, and their timeouts (and SIGTERM) stop waiting for the core's blocking
# calls, which run in daemon threads (off_loop).
@flow(name="btc-pipeline")
@guarded
async def btc_pipeline(
    source: str | None = None,
    lookback_hours: Annotated[int, Field(ge=1, le=MAX_LOOKBACK_HOURS)] | None = None,
) -> str:
    """One cycle: extract (retries, failover) -> load (observations and their daily averages)
    -> notify (message and artifacts).

    ``source`` overrides ``BTC_SOURCE``; ``lookback_hours`` asks a live source for that window
    instead of the latest price (a replay file is always read whole). Secrets are never
    parameters.
    """
    settings = await runtime_settings(source=source)
    live = settings.source != "replay"
    return await cycle(
        settings, Window.last_hours(lookback_hours) if lookback_hours and live else None
    )


async def cycle(settings: Settings, window: Window | None) -> str:
    """extract -> load -> notify as Prefect tasks, for the flow and for the warm path's task."""
    batch = await with_policy(extract, settings).with_options(
        cache_expiration=timedelta(seconds=settings.extract_cache_s)
    )(quote(settings), window)
    result = await with_policy(load, settings)(quote(settings), batch)
    sent = await with_policy(notify, settings)(quote(settings), batch, result)
    return f"{result.summary()}; {sent}"


# Prefect types task_runner as TaskRunner[PrefectFuture]; its generic is invariant (typing gap).
@flow(name="btc-backfill", task_runner=ThreadPoolTaskRunner(max_workers=4))  # type: ignore[arg-type]
@guarded
def btc_backfill(
    start: date,
    end: date,
    source: str | None = None,
    max_parallel: Annotated[int, Field(ge=1, le=MAX_PARALLEL)] = 4,
) -> str:
    """Load the UTC days ``start``..``end`` in the chunks ``btc backfill`` loads (the core's: a
    replay file in one, a live API in windows it answers in one go, e.g. 300 hours for Coinbase):
    extracts mapped over the chunks, ``max_parallel`` at a time; each load (and the daily averages
    of its days) queues on the store's single writer. Days without data inside the window are no
    error, as for the plain CLI (splitting a file by day made each empty day a failed extract)."""
    settings = run_coro_as_sync(runtime_settings(source=source))  # a sync flow
    parts = pipeline.backfill_chunks(settings, Window.days(start, end))
    extract_part, load_part = with_policy(extract, settings), with_policy(load, settings)
    loaded = 0
    progress = create_progress_artifact(
        0.0, key="btc-backfill-progress", description="Chunks loaded (%)"
    )
    for offset in range(0, len(parts), max_parallel):
        group = parts[offset : offset + max_parallel]
        batches = extract_part.map(unmapped(quote(settings)), group)
        results = load_part.map(unmapped(quote(settings)), batches).result()
        loaded += sum(r.inserted + r.updated for r in results)
        done = offset + len(group)
        update_progress_artifact(progress, 100.0 * done / len(parts))  # type: ignore[arg-type]
        get_run_logger().info(f"backfill: {done} of {len(parts)} chunks loaded")
    # Submitted: an async task called directly from a sync flow returns a coroutine nobody awaits.
    chart.submit(quote(settings)).result()  # type: ignore[call-overload]  # Prefect unquotes
    return f"backfilled {start} .. {end}: {loaded} observations new or updated"


if __name__ == "__main__":
    skip_exit_collection()
    print(asyncio.run(btc_pipeline()))
