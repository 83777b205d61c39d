"""Backfill parity on edge windows (issue 31): the Prefect flow ``btc_backfill``, Dagster's
daily-partitioned assets (a range of partitions in one run) and ``btc backfill`` write the same
export for windows over the replay file (2023-10-01 .. 2023-12-31): days without data at either
end, a single day, a window crossing a year; a window with no data at all, and reversed bounds,
are refused by all three.

It was not so: the flow split the window by day, and each day without data was a failed extract
(``UnfinishedRun: Run is in PENDING state``) where the CLI loaded the other days."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from btc_core.cli import main as btc
from btc_core.pipeline import store_for
from btc_core.settings import Settings
from btc_core.transform import export
from dagster_port.assets import btc_price_by_day, daily_avg_by_day
from dagster_port.resources import resources_for
from flows.btc import btc_backfill

pytestmark = pytest.mark.integration
FIRST, LAST = date(2023, 10, 1), date(2023, 12, 31)  # the replay file's days
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
days = st.dates(min_value=FIRST - timedelta(days=4), max_value=LAST + timedelta(days=4))


def cli(db: Path, start: date, end: date) -> str | None:
    """``btc backfill`` in this process; the export, or None when it refused."""
    code = btc(["backfill", "--from", str(start), "--to", str(end), "--db", str(db)])
    return export(store_for(Settings.from_env(None, db_path=db))) if code == 0 else None


def prefect(db: Path, start: date, end: date, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The flow in this process against the test server; the export, or None when it failed."""
    monkeypatch.setenv("BTC_DB_PATH", str(db))
    state = btc_backfill(start=start, end=end, return_state=True)
    if not state.is_completed():
        return None
    return export(store_for(Settings.from_env(None, db_path=db)))


def dagster(db: Path, start: date, end: date) -> str | None:
    """The partition range ``start``..``end`` in one run; the export, or None when it failed."""
    resources = resources_for(Settings.from_env(None, db_path=db))
    result = materialize(
        [btc_price_by_day, daily_avg_by_day],
        resources=resources,
        instance=DagsterInstance.ephemeral(),
        tags={RANGE_START: str(start), RANGE_END: str(end)},
        raise_on_error=False,  # a reversed range fails in the asset: "empty window"
    )
    return export(store_for(Settings.from_env(None, db_path=db))) if result.success else None


@pytest.fixture
def quiet(against, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Flows against the test server (``against``), replay data, no notification."""
    monkeypatch.setenv("BTC_SOURCE", "replay")
    return monkeypatch


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(start=days, end=days)
@example(start=date(2023, 12, 30), end=date(2024, 1, 1))  # the window: no data on the last
@example(start=date(2023, 9, 29), end=date(2023, 10, 2))  # no data on the first two days
@example(start=date(2023, 12, 31), end=date(2024, 1, 1))  # across a year
@example(start=date(2023, 11, 15), end=date(2023, 11, 15))  # a single day
@example(start=date(2024, 1, 2), end=date(2024, 1, 4))  # no data at all: refused by all
@example(start=date(2023, 11, 2), end=date(2023, 11, 1))  # reversed: refused by all
def test_backfill_windows_give_the_same_export_on_every_path(
    quiet: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, start: date, end: date
) -> None:
    folder = tmp_path_factory.mktemp("window")
    exports = {
        "cli": cli(folder / "cli.duckdb", start, end),
        "prefect": prefect(folder / "prefect.duckdb", start, end, quiet),
        "dagster": dagster(folder / "dagster.duckdb", start, end),
    }
    has_data = start <= end and start <= LAST and end >= FIRST
    if has_data:
        assert exports["cli"] is not None and '"day"' in exports["cli"]
        assert exports["prefect"] == exports["dagster"] == exports["cli"], (start, end)
    else:
        assert exports == {"cli": None, "prefect": None, "dagster": None}, (start, end)
