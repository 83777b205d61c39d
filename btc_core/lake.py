"""DuckLake: the store shared by workers on several hosts (catalog in PostgreSQL, Parquet on S3).

Every connection attaches the lake as ``lake`` and makes it current (``ATTACH ... AS lake;
USE lake``), so the pipeline's SQL is the same as on a local file. The extensions come from the
``duckdb-ext-*`` PyPI packages (the ``lake`` dependency group): DuckDB is pointed at their folder,
otherwise it tries to download them. This module is imported only when ``BTC_STORE_URL`` names a
DuckLake, so the core runs without those packages.

DuckLake has no primary keys: two hosts that MERGE the same new timestamp at once both insert it.
Writers are therefore serialized across hosts by a Prefect global concurrency limit (flows/btc.py),
by a lock file on one host (this module), and the reads deduplicate anyway (btc_core/transform.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import duckdb

from btc_core.errors import BtcError, ConfigError, InputError, StoreBusy
from btc_core.lake_config import LakeConfig, redact_libpq
from btc_core.sql import one_row
from btc_core.store import INSERT_NEW, SCHEMA, UPDATE_CHANGED, PriceStore, held

ALIAS = "lake"
TABLES = ("observations", "daily_avg")
EXTENSIONS = ("ducklake", "postgres", "httpfs")
# Errors opening the lake that a retry may cure: the catalog server unreachable for now, or busy.
TRANSIENT = (
    "connection refused",
    "could not connect",
    "timeout",
    "timed out",
    "the database system is starting up",
    "too many clients",
    "could not serialize",
    "conflict",
    "(http code 5",
)


def extension_directory() -> Path:
    """The folder of the ``duckdb-ext-*`` packages' extension binaries."""
    try:
        dist = metadata.distribution("duckdb-ext-ducklake")
    except metadata.PackageNotFoundError:
        raise ConfigError(
            "BTC_STORE_URL names a DuckLake but its extensions are not installed: "
            "uv sync --group lake (duckdb-ext-ducklake, duckdb-ext-postgres, duckdb-ext-httpfs)"
        ) from None
    return Path(str(dist.locate_file("duckdb_ext/extensions")))


def connection_config() -> dict[str, str | bool | int | float | list[str]]:
    """DuckDB settings of a lake connection: extensions from the packages' folder only, never
    downloaded, and loaded without DuckDB's signature check. That check hashes the three binaries
    (125 MB) on every connection: 0.25-0.4 s, most of a 36k-row lake backfill; the binaries come from
    wheels whose hashes uv.lock pins and uv verifies at install, and they sit in the same
    site-packages as duckdb's own code, so hashing them again protects nothing (docs/ducklake.md)."""
    return {
        "extension_directory": str(extension_directory()),
        "allow_unsigned_extensions": True,
        "autoinstall_known_extensions": False,
    }


def _quote(text: str) -> str:
    """A SQL string literal (ATTACH and CREATE SECRET take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class LakeStore(PriceStore):
    """A DuckLake; ``lock_path`` serializes the writers of one host (the plain CLI's guard)."""

    config: LakeConfig
    lock_path: Path
    lock_timeout_s: float = 60.0
    upsert: ClassVar[tuple[str, ...]] = (UPDATE_CHANGED, INSERT_NEW)  # inlined, unlike MERGE
    unique_ts: ClassVar[bool] = False  # no keys: a duplicate may slip in, reads deduplicate

    def describe(self) -> str:
        return self.config.describe()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the lake (current catalog), holding this host's writer lock."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with held(self.lock_path, self.lock_timeout_s, self._busy):
            con = self.open()
            try:
                ensure_schema(con)
                yield con
            finally:
                con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (``ATTACH ... (READ_ONLY)``): no lock, no catalog or table
        created; :class:`InputError` when the lake has no tables yet."""
        empty = InputError(f"{self.describe()} holds no btc tables yet: run the pipeline")
        try:
            con = self.open(read_only=True)
        except ConfigError as exc:
            if "creating a new DuckLake is explicitly disabled" not in str(exc):
                raise
            raise empty from None
        try:
            if _table_count(con) < len(TABLES):
                raise empty
            yield con
        finally:
            con.close()

    def open(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A new connection with the lake attached and current; no lock, no schema."""
        con = duckdb.connect(config=connection_config())
        try:
            for name in EXTENSIONS:
                con.execute(f"LOAD {name}")
            if self.config.s3 is not None:
                con.execute(secret_sql(self.config))
            attach(con, self.config, read_only=read_only)
        except duckdb.Error as exc:
            con.close()
            raise self.error_for(exc, "open") from None
        return con

    def error_for(self, exc: duckdb.Error, doing: str = "write") -> BtcError:
        """What opening or writing failed with: retryable when the catalog could not be reached
        or was busy, a configuration error otherwise (wrong password, no such database or
        bucket; a missing bucket shows at the first write of a new lake)."""
        first = str(exc).strip().splitlines()[0][:600]
        # DuckDB quotes the libpq string in its errors: never let a password through
        first = first.replace(self.config.catalog, redact_libpq(self.config.catalog))
        if any(marker in first.lower() for marker in TRANSIENT):
            return StoreBusy(f"cannot reach {self.describe()} now: {first}")
        return ConfigError(
            f"cannot {doing} {self.describe()}: {first} (check BTC_STORE_URL, BTC_LAKE_DATA_PATH "
            "and the S3 keys: docs/ducklake.md)"
        )

    def _busy(self, who: str) -> StoreBusy:
        return StoreBusy(
            f"{self.describe()}: {who} on this host kept {self.lock_path} for more than "
            f"{self.lock_timeout_s:g} s; try again later or raise BTC_LOCK_TIMEOUT_S"
        )

    def file_counts(self) -> dict[str, int]:
        """Data files per table (Parquet on S3, not counting inlined rows)."""
        with self.connect() as con:
            return {
                table: one_row(
                    con,
                    "SELECT count(*) FROM ducklake_list_files($lake, $table)",
                    {"lake": ALIAS, "table": table},
                )[0]
                for table in TABLES
            }

    def compact(self, keep: timedelta = timedelta(hours=1)) -> CompactionResult:
        """Flush inlined rows to Parquet, merge small files, expire snapshots older than
        ``keep`` and delete the files no snapshot needs any more."""
        before = self.file_counts()
        older_than = f"now() - INTERVAL {int(keep.total_seconds())} SECOND"
        started = time.perf_counter()
        with self.connect() as con:
            for call in (
                f"ducklake_flush_inlined_data('{ALIAS}')",
                f"ducklake_merge_adjacent_files('{ALIAS}')",
                f"ducklake_expire_snapshots('{ALIAS}', older_than => {older_than})",
                f"ducklake_cleanup_old_files('{ALIAS}', older_than => {older_than})",
            ):
                con.execute(f"CALL {call}").fetchall()
        return CompactionResult(before, self.file_counts(), time.perf_counter() - started)


@dataclass(frozen=True)
class CompactionResult:
    """Data files per table before and after one compaction."""

    before: dict[str, int]
    after: dict[str, int]
    seconds: float

    def summary(self) -> str:
        parts = [f"{t} {self.before[t]} -> {self.after[t]}" for t in TABLES]
        return f"compacted in {self.seconds:.1f} s; data files: {', '.join(parts)}"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables if missing; a host that created them at the same moment wins."""
    if _table_count(con) == len(TABLES):
        return
    try:
        con.execute(SCHEMA)
    except duckdb.TransactionException:
        con.execute(SCHEMA)  # someone else committed the tables first: they exist now


def _table_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many of the pipeline's tables the attached lake has."""
    (n,) = one_row(
        con,
        """SELECT count(*) FROM duckdb_tables()
            WHERE database_name = $lake AND list_contains($names, table_name)""",
        {"lake": ALIAS, "names": TABLES},
    )
    return n


def attach(
    con: duckdb.DuckDBPyConnection, config: LakeConfig, tries: int = 3, read_only: bool = False
) -> None:
    """Attach the lake and make it current. The first ATTACH of a new catalog creates its
    tables in PostgreSQL: a host doing the same at that moment makes one of them fail with a
    duplicate key (or "already exists"), and attaching again then finds the catalog ready."""
    for attempt in range(tries):
        try:
            con.execute(attach_sql(config, read_only))
            break
        except duckdb.Error as exc:
            raced = any(m in str(exc) for m in ("duplicate key", "already exists"))
            if attempt == tries - 1 or not raced:
                raise
            time.sleep(0.2 * (attempt + 1))
    con.execute(f"USE {ALIAS}")


def attach_sql(config: LakeConfig, read_only: bool = False) -> str:
    """``ATTACH 'ducklake:postgres:...' AS lake (DATA_PATH ..., DATA_INLINING_ROW_LIMIT n)``."""
    options = [f"DATA_PATH {_quote(config.data_path)}"]
    if read_only:
        options.append("READ_ONLY")
    if config.inline_rows:
        options.append(f"DATA_INLINING_ROW_LIMIT {int(config.inline_rows)}")
    source = _quote(f"ducklake:postgres:{config.catalog}")
    return f"ATTACH {source} AS {ALIAS} ({', '.join(options)})"


def secret_sql(config: LakeConfig) -> str:
    """A temporary (in-memory) S3 secret for this connection; never logged."""
    s3 = config.s3
    assert s3 is not None
    fields = {
        "KEY_ID": _quote(s3.key_id),
        "SECRET": _quote(s3.secret),
        "REGION": _quote(s3.region),
    }
    if s3.endpoint:
        fields |= {
            "ENDPOINT": _quote(s3.endpoint),
            "URL_STYLE": "'path'",
            "USE_SSL": "true" if s3.use_ssl else "false",
        }
    body = ", ".join(f"{k} {v}" for k, v in fields.items())
    return f"CREATE OR REPLACE TEMPORARY SECRET btc_lake_s3 (TYPE s3, {body})"
