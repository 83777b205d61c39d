"""The pipeline's steps, composed for the plain runner; orchestrators call the same steps one by one.

extract (retry and failover policies) -> load (observations and the daily averages of the days
they touch, one transaction) -> notify (the latest daily average)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from btc_core import notify as notify_channel
from btc_core import transform
from btc_core.errors import NotifyError
from btc_core.observations import Batch, Window
from btc_core.policy import RetryPolicy, extract_try, retrying, source_chain
from btc_core.settings import Settings
from btc_core.store import LoadResult, PriceStore, Store
from btc_core.transform import Latest

log = logging.getLogger(__name__)


def store_for(settings: Settings) -> PriceStore:
    """The store the settings point at: the local DuckDB file, or the DuckLake of
    ``BTC_STORE_URL`` (imported only then: its extensions are an optional dependency group)."""
    if not settings.store_url.get_secret_value():
        return Store(settings.db_path, settings.lock_timeout_s)
    from btc_core.lake import LakeStore
    from btc_core.lake_config import LakeConfig

    lock = settings.db_path.with_name("ducklake.lock")  # this host's writers queue here
    return LakeStore(LakeConfig.from_settings(settings), lock, settings.lock_timeout_s)


def extract(
    settings: Settings, window: Window | None = None, replay_file: Path | None = None
) -> Batch:
    """Observations from the configured source, with the retry and failover policies of
    :mod:`btc_core.policy` (the plain runner is its own orchestrator here)."""
    policy = RetryPolicy.from_settings(settings)
    return retrying(policy, lambda attempt: extract_try(settings, window, replay_file, attempt))


def load(settings: Settings, batch: Batch) -> LoadResult:
    """Upsert a batch and refresh the daily averages of the days it touches, in one
    transaction (a crash leaves the old state or the new one)."""
    return store_for(settings).load(batch)


def load_retrying(settings: Settings, batch: Batch) -> LoadResult:
    """:func:`load` with the retry policy, as the plain runner's orchestrator: a store busy
    with another writer is tried again like on every other path."""
    return retrying(RetryPolicy.from_settings(settings), lambda _attempt: load(settings, batch))


def latest(settings: Settings) -> Latest | None:
    """The newest daily average and the one before it (None while the store is empty)."""
    return transform.latest(store_for(settings))


def notify(settings: Settings, current: Latest | None) -> str:
    """Send the latest daily average on the configured channel; where it went."""
    return notify_channel.notify(settings, current)


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
    """One hourly cycle: extract, load, notify. A failed notification is reported, not
    raised: the data stays loaded."""
    batch = extract(settings, window, replay_file)
    report = RunReport(batch, load_retrying(settings, batch), latest(settings))
    try:
        report.notified = notify(settings, report.latest)
    except NotifyError as exc:
        report.notify_error = str(exc)
        log.error("%s", exc)
    return report


def chunk_size(settings: Settings) -> timedelta | None:
    """How much of a window one request of the configured source may cover (None: all of it)."""
    return getattr(source_chain(settings)[0], "chunk", None)


def backfill_chunks(settings: Settings, window: Window) -> list[Window]:
    """The parts a backfill of ``window`` loads one by one (or an orchestrator maps): the live
    source's request window, or the whole window for a replay file."""
    size = chunk_size(settings)
    return list(window.chunks(size)) if size else [window]


def backfill(
    settings: Settings,
    window: Window,
    replay_file: Path | None = None,
    on_chunk: Callable[[Window, LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Load ``window`` chunk by chunk (one chunk for replay), each with its daily averages."""
    results = []
    for part in backfill_chunks(settings, window):
        result = load_retrying(settings, extract(settings, part, replay_file))
        results.append(result)
        if on_chunk:
            on_chunk(part, result)
    return results
