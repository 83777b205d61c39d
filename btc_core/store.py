"""The store: schema, one-writer guard, and an idempotent upsert in one transaction.

:class:`PriceStore` is the interface every step calls (``connect()`` and ``load()``, the same SQL
on every backend); :class:`Store` is the local DuckDB file (the default), and
:class:`btc_core.lake.LakeStore` a DuckLake shared by several hosts (``BTC_STORE_URL``).

DuckDB lets one process write a database file. Every access goes through :meth:`Store.connect`,
which takes an advisory lock file next to the database first, so a second writer (another
process or thread) waits its turn for up to ``lock_timeout_s`` and then fails with
:class:`~btc_core.errors.StoreBusy` instead of DuckDB's raw "Could not set lock" error.

``observations`` has no PRIMARY KEY on purpose: DuckDB's ART index makes a 5-million-row load
about 3x slower, and DuckLake has no keys at all. Uniqueness of ``ts`` is kept by the MERGE under
the writer lock, and checked by the tests.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import ClassVar

import duckdb
from filelock import FileLock, Timeout

from btc_core.errors import InputError, StoreBusy
from btc_core.observations import Batch, utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    ts          TIMESTAMP NOT NULL,  -- UTC, one row per timestamp
    price_usd   DOUBLE    NOT NULL,
    source      VARCHAR   NOT NULL,
    ingested_at TIMESTAMP NOT NULL   -- UTC
);
CREATE TABLE IF NOT EXISTS daily_avg (
    day           DATE    NOT NULL,  -- UTC day
    avg_price_usd DOUBLE  NOT NULL,
    n_obs         INTEGER NOT NULL
);
"""

MERGE = """
MERGE INTO observations AS o
USING (SELECT ts, price_usd FROM batch_frame) AS b ON o.ts = b.ts
WHEN MATCHED AND o.price_usd <> b.price_usd THEN
    UPDATE SET price_usd = b.price_usd, source = $source, ingested_at = $now
WHEN NOT MATCHED THEN
    INSERT (ts, price_usd, source, ingested_at) VALUES (b.ts, b.price_usd, $source, $now)
"""

# The same upsert as two statements, for DuckLake: it keeps small INSERTs in its catalog (data
# inlining) but writes a Parquet file for every MERGE, whatever its size (measured, 1.4.4).
UPDATE_CHANGED = """
UPDATE observations SET price_usd = b.price_usd, source = $source, ingested_at = $now
  FROM (SELECT ts, price_usd FROM batch_frame) AS b
 WHERE observations.ts = b.ts AND observations.price_usd <> b.price_usd
"""
INSERT_NEW = """
INSERT INTO observations
SELECT b.ts, b.price_usd, $source, $now FROM batch_frame AS b
 WHERE NOT EXISTS (SELECT 1 FROM observations AS o WHERE o.ts = b.ts)
"""


@dataclass(frozen=True)
class LoadResult:
    """What one load changed."""

    source: str
    inserted: int
    updated: int
    unchanged: int
    first_day: date
    last_day: date

    def summary(self) -> str:
        return (
            f"loaded {self.inserted} new, {self.updated} updated, {self.unchanged} unchanged "
            f"observations from {self.source} ({self.first_day} .. {self.last_day})"
        )


class PriceStore(ABC):
    """What the pipeline needs from a store: a connection whose current catalog holds
    ``observations`` and ``daily_avg``, and the upsert. ``before_commit`` is a test switch that
    runs inside the load transaction."""

    before_commit: Callable[[], None] | None = None
    upsert: ClassVar[tuple[str, ...]] = (MERGE,)  # the upsert's statements, one transaction
    unique_ts: ClassVar[bool] = True  # the store keeps one row per ts (reads need not dedupe)

    @abstractmethod
    def connect(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection with the schema in place (and, for a local file, the writer lock)."""

    @abstractmethod
    def describe(self) -> str:
        """One line naming the store, without credentials."""

    def load(self, batch: Batch, now: datetime | None = None) -> LoadResult:
        """Upsert ``batch`` in one transaction: new timestamps are inserted, changed prices
        replaced (the later observation wins), identical rows left alone."""
        ingested_at = (now or utc_now()).replace(tzinfo=None)
        with self.connect() as con:
            con.begin()
            try:
                con.register("batch_frame", batch.frame)
                (before,) = con.execute("SELECT count(*) FROM observations").fetchone()  # type: ignore[misc]
                (updated,) = (
                    con.execute(
                        """SELECT count(*) FROM observations o JOIN batch_frame b ON o.ts = b.ts
                       WHERE o.price_usd <> b.price_usd"""
                    ).fetchone()
                    if before
                    else (0,)
                )  # type: ignore[misc]
                for statement in self.upsert:
                    con.execute(statement, {"source": batch.source, "now": ingested_at})
                (after,) = con.execute("SELECT count(*) FROM observations").fetchone()  # type: ignore[misc]
                if self.before_commit:
                    self.before_commit()
                commit(con, self)
            except BaseException:
                con.rollback()
                raise
            finally:
                con.unregister("batch_frame")
        inserted = after - before
        return LoadResult(
            batch.source,
            inserted,
            updated,
            len(batch.frame) - inserted - updated,
            batch.first_day,
            batch.last_day,
        )


def commit(con: duckdb.DuckDBPyConnection, store: PriceStore) -> None:
    """Commit; a DuckLake write conflict (another host committed first) becomes the retryable
    :class:`StoreBusy` instead of a raw TransactionException."""
    try:
        con.commit()
    except duckdb.TransactionException as exc:
        if "conflict" not in str(exc).lower():
            raise
        raise StoreBusy(
            f"{store.describe()}: another writer committed first; retry "
            "(with several hosts, set BTC_WRITER_LIMIT so writers queue instead)"
        ) from None


class Store(PriceStore):
    """A local DuckDB file guarded for one writer at a time."""

    def __init__(
        self,
        path: Path | str,
        lock_timeout_s: float = 60.0,
        before_commit: Callable[[], None] | None = None,
    ):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.before_commit = before_commit  # a test switch: runs inside the load transaction

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection holding the writer lock, with the schema in place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        with held(Path(f"{self.path}.lock"), self.lock_timeout_s, self._busy):
            con = self._open(deadline)
            try:
                con.execute(SCHEMA)
                yield con
            finally:
                con.close()

    def _open(self, deadline: float) -> duckdb.DuckDBPyConnection:
        """Open the file; a process outside our lock (a DuckDB shell, say) is waited for too."""
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    first = str(exc).strip().splitlines()[0]
                    raise InputError(f"cannot open DuckDB file {self.path}: {first}") from None
                if time.monotonic() >= deadline:
                    holder = _lock_holder(str(exc))
                    raise self._busy(f"another process{holder}") from None
                time.sleep(0.2)

    def describe(self) -> str:
        return f"DuckDB file {self.path}"

    def _busy(self, who: str) -> StoreBusy:
        return StoreBusy(
            f"DuckDB file {self.path} is busy: {who} kept it for more than "
            f"{self.lock_timeout_s:g} s; try again later or raise BTC_LOCK_TIMEOUT_S"
        )


@contextmanager
def held(lock_path: Path, timeout_s: float, busy: Callable[[str], StoreBusy]) -> Iterator[None]:
    """Hold the advisory lock file ``lock_path``; ``busy(...)`` is raised after ``timeout_s``."""
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise busy("another btc writer") from None
    try:
        yield
    finally:
        lock.release()


def _lock_holder(message: str) -> str:
    """' (PID n)' from DuckDB's lock error when it names the holder."""
    marker = "PID "
    if marker in message:
        pid = message.split(marker, 1)[1].split(")")[0].split()[0]
        if pid.isdigit() and int(pid) != os.getpid():
            return f" (PID {pid})"
    return ""
