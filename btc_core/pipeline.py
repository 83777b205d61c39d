"""The pipeline steps composed for the plain runner; orchestrators call the same steps one by one.

extract (retries + failover) -> load (upsert) -> transform (daily_avg of the touched days) -> notify
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from btc_core.errors import NotifyError
from btc_core.notify import notify
from btc_core.observations import Batch, Window
from btc_core.settings import Settings
from btc_core.sources import fetch_with_failover, source_chain
from btc_core.store import LoadResult, PriceStore, Store
from btc_core.transform import Latest, latest, refresh_daily_avg

log = logging.getLogger(__name__)


def store_for(settings: Settings) -> PriceStore:
    """The store the settings point at: the local DuckDB file, or the DuckLake of
    ``BTC_STORE_URL`` (imported only then: its extensions are an optional dependency group)."""
    pause = settings.pause_before_commit_s
    hook = _pause(pause) if pause > 0 else None
    if not settings.store_url:
        return Store(settings.db_path, settings.lock_timeout_s, hook)
    from btc_core.lake import LakeStore
    from btc_core.lake_config import LakeConfig

    lock = settings.db_path.with_name("ducklake.lock")  # this host's writers queue here
    return LakeStore(LakeConfig.from_settings(settings), lock, settings.lock_timeout_s, hook)


def _pause(seconds: float) -> Callable[[], None]:
    def before_commit() -> None:
        print(
            f"btc: test hook: PID {os.getpid()} pausing {seconds:g} s before commit",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(seconds)

    return before_commit


def extract(
    settings: Settings, window: Window | None = None, replay_file: Path | None = None
) -> Batch:
    """Observations from the configured source, with retries and failover."""
    return fetch_with_failover(settings, window, replay_file)


def load(settings: Settings, batch: Batch) -> LoadResult:
    """Upsert a batch into the store."""
    return store_for(settings).load(batch)


def transform(settings: Settings, result: LoadResult) -> Latest | None:
    """Recompute the daily averages of the days a load touched; return the latest two days."""
    store = store_for(settings)
    refresh_daily_avg(store, result.first_day, result.last_day)
    return latest(store)


@dataclass
class RunReport:
    """What a run did, for the CLI to print."""

    batch: Batch
    load: LoadResult
    latest: Latest | None
    notified: str = ""
    notify_error: str = ""


def run_cycle(
    settings: Settings, window: Window | None = None, replay_file: Path | None = None
) -> RunReport:
    """One hourly cycle: extract, load, transform, notify. A failed notification is reported,
    not raised: the data stays loaded."""
    batch = extract(settings, window, replay_file)
    result = load(settings, batch)
    report = RunReport(batch, result, transform(settings, result))
    try:
        report.notified = notify(settings, report.latest)
    except NotifyError as exc:
        report.notify_error = str(exc)
        log.error("%s", exc)
    return report


def chunk_size(settings: Settings) -> timedelta | None:
    """How much of a window one request of the configured source may cover (None: all of it)."""
    return getattr(source_chain(settings)[0], "chunk", None)


def backfill(
    settings: Settings,
    window: Window,
    replay_file: Path | None = None,
    on_chunk: Callable[[Window, LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Load ``window`` chunk by chunk (one chunk for replay), then refresh its daily averages."""
    size = chunk_size(settings)
    chunks = list(window.chunks(size)) if size else [window]
    results = []
    for part in chunks:
        result = load(settings, extract(settings, part, replay_file))
        results.append(result)
        if on_chunk:
            on_chunk(part, result)
    days = window.day_list()
    refresh_daily_avg(store_for(settings), days[0], days[-1])
    return results
