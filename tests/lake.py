"""A DuckLake for the tests: a fresh catalog database on the local PostgreSQL (dropped after) and
S3 in moto's server mode on 127.0.0.1 (tests/e2e/hosts.py), as the settings of a worker host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from deployments.postgres import postgres_available, scratch_database
from tests.e2e.hosts import S3
from tests.prefect.conftest import NO_POSTGRES


@dataclass(frozen=True)
class Lake:
    """One DuckLake: its catalog database and data prefix in the bucket."""

    s3: S3
    dbname: str
    prefix: str

    def env(self, inline_rows: int = 100) -> dict[str, str]:
        """The BTC_* and AWS_* variables a worker host sets to use this lake."""
        return {
            "BTC_STORE_URL": f"ducklake:postgres:dbname={self.dbname} host=127.0.0.1 user=postgres",
            "BTC_LAKE_DATA_PATH": f"s3://{self.s3.bucket}/{self.prefix}/",
            "BTC_LAKE_INLINE_ROWS": str(inline_rows),
            "BTC_S3_ENDPOINT_URL": self.s3.endpoint_url,
            **self.s3.worker_env(),
        }

    def parquet_keys(self) -> list[str]:
        return [k for k in self.s3.object_keys() if k.startswith(f"{self.prefix}/")]


@contextmanager
def lake_s3() -> Iterator[S3]:
    with S3.start("btc-lake", f"AKIA{uuid.uuid4().hex[:16].upper()}", uuid.uuid4().hex) as s3:
        yield s3


@contextmanager
def new_lake(s3: S3) -> Iterator[Lake]:
    """A lake with a catalog database of its own."""
    if not postgres_available():
        pytest.skip(NO_POSTGRES)
    with scratch_database("btc_lake_test") as name:
        yield Lake(s3, name, name)
