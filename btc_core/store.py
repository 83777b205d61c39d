"""The store: schema, one-writer guard, and an idempotent load in one transaction.

:class:`PriceStore` is the interface every step calls (``connect()``, ``read()`` and ``load()``,
the same SQL on every backend); :class:`Store` is the local DuckDB file (the default), and
:class:`btc_core.lake.LakeStore` a DuckLake shared by several hosts (``BTC_STORE_URL``).

A load upserts the batch and refreshes ``daily_avg`` for the days it touched in the same
transaction: a crash at any point leaves the old state or the new one, never observations with
stale averages. Reads (``read()``) never create a database, a folder or a table, and work on a
good database in a read-only folder.

DuckDB lets one process write a database file. Every access goes through :meth:`Store.connect`,
which takes an advisory lock file next to the database first, so a second writer (another
process or thread) waits its turn for up to ``lock_timeout_s`` and then fails with
:class:`~btc_core.errors.StoreBusy` instead of DuckDB's raw "Could not set lock" error.

``observations`` has no PRIMARY KEY on purpose: DuckDB's ART index makes a 5-million-row load
about 3x slower, and DuckLake has no keys at all. Uniqueness of ``ts`` is kept by the MERGE under
the writer lock, and checked by the tests.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from itertools import zip_longest
from pathlib import Path
from typing import ClassVar

import duckdb
from filelock import FileLock, Timeout

from btc_core.daily import refresh_days
from btc_core.errors import BtcError, ConfigError, InputError, StoreBusy
from btc_core.files import special_kind
from btc_core.observations import Batch, utc_now
from btc_core.sql import execute, one_row

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
CREATE TABLE IF NOT EXISTS loads (  -- one row per load, written in its transaction (no values)
    loaded_at   TIMESTAMP NOT NULL,  -- UTC
    source      VARCHAR   NOT NULL,  -- the source that served the batch
    received    INTEGER   NOT NULL,  -- rows in: kept + rejected + duplicates collapsed
    kept        INTEGER   NOT NULL,
    rejected    INTEGER   NOT NULL,
    duplicates  INTEGER   NOT NULL,
    inserted    INTEGER   NOT NULL,
    updated     INTEGER   NOT NULL,
    first_day   DATE      NOT NULL,
    last_day    DATE      NOT NULL,
    notes       VARCHAR   NOT NULL   -- the failover taken, if any ("; " between notes)
);
"""

# The columns of every table in the current catalog's main schema, as ``name TYPE`` in order.
COLUMNS = """
SELECT table_name, list(column_name || ' ' || data_type ORDER BY column_index)
  FROM duckdb_columns()
 WHERE database_name = current_database() AND schema_name = 'main'
 GROUP BY table_name
 ORDER BY table_name
"""


@cache
def our_columns() -> dict[str, list[str]]:
    """Table -> columns, as :data:`SCHEMA` makes them (read from DuckDB, not restated)."""
    with duckdb.connect() as con:
        con.execute(SCHEMA)
        return dict(con.execute(COLUMNS).fetchall())


def foreign_schema(con: duckdb.DuckDBPyConnection, empty_ok: bool) -> str | None:
    """Why the database behind ``con`` is not a btc store, or None when it is one (or is empty,
    with ``empty_ok``: a new file).

    A btc store is recognised by its schema: ``observations`` and ``daily_avg`` with exactly the
    columns and types of :data:`SCHEMA`, and ``loads`` too once it exists (stores made before it
    get it on their next load). Other tables beside them are left alone."""
    found = dict(con.execute(COLUMNS).fetchall())
    if not found and empty_ok:
        return None
    for table, columns in our_columns().items():
        if table not in found:
            if table != "loads":
                return f"no table {table}"
        elif found[table] != columns:
            theirs, ours = next(
                pair
                for pair in zip_longest(found[table], columns, fillvalue="nothing")
                if pair[0] != pair[1]
            )
            return f"table {table} has {theirs[:60]} instead of {ours}"
    return None


RECORD_LOAD = """
INSERT INTO loads VALUES ($now, $source, $received, $kept, $rejected, $duplicates, $inserted,
                          $updated, $first_day, $last_day, $notes)
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
    days: int = 0  # daily_avg rows refreshed in the same transaction
    received: int = 0  # the batch's accounting (value-free): rows received, rejected, collapsed
    rejected: int = 0
    duplicates: int = 0

    def record(self, now: datetime, notes: list[str]) -> dict[str, object]:
        """This load as the parameters of a ``loads`` row."""
        kept = self.inserted + self.updated + self.unchanged
        return {
            "now": now,
            "source": self.source,
            "received": self.received,
            "kept": kept,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "inserted": self.inserted,
            "updated": self.updated,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "notes": "; ".join(notes),
        }

    def summary(self) -> str:
        return (
            f"loaded {self.inserted} new, {self.updated} updated, {self.unchanged} unchanged "
            f"observations from {self.source} ({self.first_day} .. {self.last_day}; "
            f"{self.rejected} rows rejected), daily_avg refreshed for {self.days} day(s)"
        )


class PriceStore(ABC):
    """What the pipeline needs from a store: a connection whose current catalog holds
    ``observations`` and ``daily_avg``, a read-only one, and the load."""

    # A seam for crash drills (tests/crash.py): called with the store inside every load
    # transaction, after the upsert and before the refresh of daily_avg and the commit. Set on
    # the class, by tests only.
    before_commit: ClassVar[Callable[[PriceStore], None] | None] = None
    upsert: ClassVar[tuple[str, ...]] = (MERGE,)  # the upsert's statements, one transaction
    unique_ts: ClassVar[bool] = True  # the store keeps one row per ts (reads need not dedupe)

    @abstractmethod
    def connect(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection with the schema in place (and, for a local file, the writer lock)."""

    @abstractmethod
    def read(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-only connection to an existing store; :class:`InputError` if there is none."""

    @abstractmethod
    def describe(self) -> str:
        """One line naming the store, without credentials."""

    def error_for(self, exc: duckdb.Error) -> BtcError:
        """A failed write as one clear line (a full disk, an invalidated file)."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return InputError(f"cannot write {self.describe()}: {first}")

    def load(self, batch: Batch, now: datetime | None = None) -> LoadResult:
        """Upsert ``batch`` and refresh ``daily_avg`` for its days, in one transaction: new
        timestamps are inserted, changed prices replaced (the later observation wins),
        identical rows left alone."""
        ingested_at = (now or utc_now()).replace(tzinfo=None)
        with self.connect() as con:
            con.register("batch_frame", batch.columns())
            try:
                with transaction(con, self):
                    (before,) = one_row(con, "SELECT count(*) FROM observations")
                    (updated,) = (
                        one_row(
                            con,
                            """SELECT count(*) FROM observations o JOIN batch_frame b ON o.ts = b.ts
                                WHERE o.price_usd <> b.price_usd""",
                        )
                        if before
                        else (0,)
                    )
                    for statement in self.upsert:
                        execute(con, statement, {"source": batch.source, "now": ingested_at})
                    (after,) = one_row(con, "SELECT count(*) FROM observations")
                    if PriceStore.before_commit:
                        PriceStore.before_commit(self)
                    days = refresh_days(con, self.unique_ts, batch.first_day, batch.last_day)
                    result = LoadResult(
                        batch.source,
                        after - before,
                        updated,
                        batch.kept - (after - before) - updated,
                        batch.first_day,
                        batch.last_day,
                        days,
                        batch.received,
                        batch.n_rejected,
                        batch.duplicates,
                    )
                    execute(con, RECORD_LOAD, result.record(ingested_at, batch.notes))
            finally:
                con.unregister("batch_frame")
        return result


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection, store: PriceStore) -> Iterator[None]:
    """Run the block in one transaction: commit at its end (see :func:`commit`), roll back on
    any failure; a DuckDB error becomes the store's one-line error."""
    con.begin()
    try:
        yield
        commit(con, store)
    except duckdb.Error as exc:
        _rollback(con)
        raise store.error_for(exc) from None
    except BaseException:
        _rollback(con)
        raise


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back what is left: a commit that failed (a full disk) has ended the transaction
    already, and DuckDB then refuses the rollback ("no transaction is active")."""
    with suppress(duckdb.TransactionException):
        con.rollback()


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

    def __init__(self, path: Path | str, lock_timeout_s: float = 60.0):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection holding the writer lock, with the schema in place."""
        self._regular_or_absent()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from None
        deadline = time.monotonic() + self.lock_timeout_s
        with held(self.lock_path, self.lock_timeout_s, self._busy, self._unusable):
            con = self._open(deadline)
            try:
                self._ours(con, empty_ok=True)
                con.execute(SCHEMA)
                yield con
            finally:
                con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to the existing file, after the writer queued before us. In a
        folder where the lock file cannot be made nobody can write either, so none is taken."""
        self._regular_or_absent()
        if not self.path.is_file():
            raise InputError(
                f"no DuckDB file at {self.path}: run the pipeline first, or check --db / "
                "BTC_DB_PATH"
            )
        deadline = time.monotonic() + self.lock_timeout_s
        with ExitStack() as stack:
            with suppress(OSError):
                stack.enter_context(held(self.lock_path, self.lock_timeout_s, self._busy))
            con = stack.enter_context(closing(self._open(deadline, read_only=True)))
            self._ours(con, empty_ok=False)
            yield con

    def check_writable(self) -> None:
        """:class:`ConfigError` if the file could not be created or written where it is meant to
        be; nothing stays behind (an anonymous temporary file at most)."""
        self._regular_or_absent()
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            with tempfile.TemporaryFile(dir=folder):
                pass
            if self.path.exists():
                self.path.open("r+b").close()
        except OSError as exc:
            raise self._unusable(exc) from None

    @property
    def lock_path(self) -> Path:
        return Path(f"{self.path}.lock")

    def _open(self, deadline: float, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the file; a process outside our lock (a DuckDB shell, say) is waited for too."""
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                if "lock" not in str(exc).lower():
                    first = str(exc).strip().splitlines()[0]
                    raise InputError(f"cannot open DuckDB file {self.path}: {first}") from None
                if time.monotonic() >= deadline:
                    holder = _lock_holder(str(exc))
                    raise self._busy(f"another process{holder}") from None
                time.sleep(0.2)

    def describe(self) -> str:
        return f"DuckDB file {self.path}"

    def _ours(self, con: duckdb.DuckDBPyConnection, empty_ok: bool) -> None:
        """:class:`InputError` before anything is written to (or read from) a database that is
        not a btc store (:func:`foreign_schema`)."""
        if why := foreign_schema(con, empty_ok):
            raise InputError(f"{self.path} is not a btc database ({why}): check --db / BTC_DB_PATH")

    def _busy(self, who: str) -> StoreBusy:
        return StoreBusy(
            f"DuckDB file {self.path} is busy: {who} kept it for more than "
            f"{self.lock_timeout_s:g} s; try again later or raise BTC_LOCK_TIMEOUT_S"
        )

    def _regular_or_absent(self) -> None:
        """Refuse at once a path that is not a regular file: DuckDB would block on a FIFO, and
        the lock file must not be made beside a device (``/dev/null.lock``)."""
        for path, follow in ((self.path, True), (self.lock_path, False)):
            if kind := special_kind(path, follow):
                what = "a DuckDB file" if path == self.path else "the lock file of one"
                raise ConfigError(f"{path} is a {kind}, not {what}: check --db / BTC_DB_PATH")

    def _unusable(self, exc: OSError) -> ConfigError:
        return ConfigError(
            f"cannot write the DuckDB file {self.path} there: {exc.strerror or exc} "
            "(choose another --db / BTC_DB_PATH)"
        )


@contextmanager
def held(
    lock_path: Path,
    timeout_s: float,
    busy: Callable[[str], StoreBusy],
    unusable: Callable[[OSError], Exception] | None = None,
) -> Iterator[None]:
    """Hold the advisory lock file ``lock_path``; ``busy(...)`` is raised after ``timeout_s``,
    ``unusable(error)`` (if given) when the lock file cannot be made there."""
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise busy("another btc writer") from None
    except OSError as exc:
        if unusable is None:
            raise
        raise unusable(exc) from None
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
