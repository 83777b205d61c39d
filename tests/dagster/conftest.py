"""Fixtures of the Dagster suite: resources on the isolated ``settings``, Dagster instances."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test

from btc_core.pipeline import run_cycle, store_for
from btc_core.settings import Settings
from btc_core.transform import export
from dagster_port.resources import BtcResource, resources_for


@pytest.fixture
def resources(settings: Settings) -> dict[str, BtcResource]:
    return resources_for(settings)


@pytest.fixture
def instance() -> DagsterInstance:
    """In memory: enough for ``materialize`` and automation evaluation."""
    return DagsterInstance.ephemeral()


@pytest.fixture
def stored_instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """On disk in ``tmp_path``: what sensors evaluated against an event log need."""
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance


@pytest.fixture
def plain_export(tmp_path: Path) -> Callable[[Settings], str]:
    """The contract JSON of the plain path (``run_cycle`` + ``export``) on a DuckDB of its own."""

    def run(settings: Settings) -> str:
        plain = settings.replace(db_path=tmp_path / "plain" / "btc.duckdb")
        run_cycle(plain)
        return export(store_for(plain))

    return run
