"""A DuckDB file held by another writer until the first load has given up waiting for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from btc_core.errors import StoreBusy
from btc_core.observations import Batch
from btc_core.store import LoadResult, Store


@contextmanager
def busy_once(monkeypatch: pytest.MonkeyPatch, path: Path) -> Iterator[list[StoreBusy]]:
    """Hold ``path``'s writer lock in a thread; release it as soon as a ``Store.load`` raised
    StoreBusy (recorded in the list yielded), so the retry finds the file free."""
    release, held = threading.Event(), threading.Event()
    give_ups: list[StoreBusy] = []
    real_load = Store.load

    def load(self: Store, batch: Batch) -> LoadResult:
        try:
            return real_load(self, batch)
        except StoreBusy as exc:
            give_ups.append(exc)
            release.set()
            raise

    def hold() -> None:
        with Store(path).connect():
            held.set()
            release.wait(30)

    monkeypatch.setattr(Store, "load", load)
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        yield give_ups
    finally:
        release.set()
        holder.join()
