"""Schedules, sensors and declarative automation, evaluated without a daemon."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    EvaluateAutomationConditionsResult,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from btc_core.observations import Batch
from btc_core.pipeline import store_for
from btc_core.settings import Settings
from btc_core.transform import export
from dagster_port.assets import btc_price, daily_avg
from dagster_port.automation import automation_sensor, hourly_schedule, replay_file_sensor
from dagster_port.checks import CHECKS
from dagster_port.definitions import build
from dagster_port.resources import BtcResource, LiveSource, ReplaySource


@dataclass
class Daemon:
    """Evaluates the automation conditions as ``btc_automation`` does every 30 s, and keeps the
    cursor between ticks as the daemon does."""

    defs: Definitions
    instance: DagsterInstance
    cursor: str | None = None

    def tick(self) -> EvaluateAutomationConditionsResult:
        result = evaluate_automation_conditions(
            self.defs,
            self.instance,
            asset_selection=automation_sensor.asset_selection,
            cursor=self.cursor,
        )
        self.cursor = result.cursor
        return result

    def materialize_all(self) -> None:
        """What *Materialize all* in the UI launches: the global asset job with both assets."""
        self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.instance, asset_selection=[btc_price.key, daily_avg.key]
        )


@pytest.fixture
def daemon(settings: Settings, instance: DagsterInstance) -> Daemon:
    return Daemon(build(settings), instance)


def test_materializing_only_btc_price_leaves_daily_avg_stale_until_automation_selects_it(
    settings: Settings, daemon: Daemon, resources: dict[str, BtcResource]
) -> None:
    assert daemon.tick().total_requested == 0  # btc_price missing: nothing to average yet

    # as the UI's "Materialize" does: the asset and its checks, nothing downstream
    materialize([btc_price, *CHECKS], resources=resources, instance=daemon.instance)

    # the load refreshed daily_avg for its days in its own transaction: the data is never stale,
    # but Dagster's daily_avg asset is, until automation materializes it
    assert export(store_for(settings)) != "[]\n"
    after_load = daemon.tick()
    assert after_load.get_requested_partitions(daily_avg.key) == {None}
    assert after_load.total_requested == 1

    materialize(
        [btc_price, daily_avg],
        selection=[daily_avg],
        resources=resources,
        instance=daemon.instance,
    )

    assert daemon.tick().total_requested == 0


def test_the_hourly_job_loads_btc_price_and_automation_follows(daemon: Daemon) -> None:
    daemon.tick()

    job = daemon.defs.resolve_job_def("btc_hourly")
    assert job.execute_in_process(instance=daemon.instance).success

    assert daemon.tick().get_requested_partitions(daily_avg.key) == {None}
    assert daemon.instance.get_latest_materialization_event(daily_avg.key) is None


def test_materializing_both_from_the_ui_adds_no_automation_run(daemon: Daemon) -> None:
    daemon.tick()
    daemon.materialize_all()
    assert daemon.tick().total_requested == 0


def test_a_btc_price_update_after_daily_avg_in_the_same_tick_is_not_lost(
    daemon: Daemon, resources: dict[str, BtcResource]
) -> None:
    # The daemon ticks every 30 s. Stock eager() sees "daily_avg updated" in the tick and counts
    # that as handled, even when btc_price updated again after it: daily_avg would stay stale.
    daemon.tick()
    daemon.materialize_all()
    materialize([btc_price, *CHECKS], resources=resources, instance=daemon.instance)

    assert daemon.tick().get_requested_partitions(daily_avg.key) == {None}


def test_automation_waits_for_the_blocking_checks_of_btc_price(
    settings: Settings, daemon: Daemon, resources: dict[str, BtcResource]
) -> None:
    daemon.tick()
    store_for(settings).load(
        Batch("test", np.array(["2023-09-30T12:00"], dtype="datetime64[us]"), np.array([-1.0]))
    )

    materialize(
        [btc_price, *CHECKS], resources=resources, instance=daemon.instance, raise_on_error=False
    )

    assert daemon.tick().total_requested == 0


def test_the_automation_sensor_is_on_by_default() -> None:
    assert automation_sensor.default_status == DefaultSensorStatus.RUNNING


def test_the_hourly_schedule_requests_the_hourly_job() -> None:
    context = build_schedule_context(scheduled_execution_time=datetime(2024, 1, 1, 5, tzinfo=UTC))

    (request,) = hourly_schedule.evaluate_tick(context).run_requests or []

    assert hourly_schedule.cron_schedule == "0 * * * *"
    assert hourly_schedule.execution_timezone == "UTC"
    assert hourly_schedule.job_name == "btc_hourly"
    assert isinstance(request, RunRequest)


def test_the_replay_sensor_runs_once_per_new_or_changed_file(
    replay_csv: Path, tmp_path: Path
) -> None:
    replay = tmp_path / "replay.csv"
    replay.write_bytes(replay_csv.read_bytes())
    context = build_sensor_context(
        resources={"price_source": ReplaySource(replay_file=str(replay))}
    )

    first = replay_file_sensor(context)
    unchanged = replay_file_sensor(context)
    with replay.open("a") as fh:
        fh.write("1704067200,2024-01-01,0,42000,42100,42050,41900,1,42000\n")
    changed = replay_file_sensor(context)

    assert isinstance(first, RunRequest) and isinstance(changed, RunRequest)
    assert first.run_key != changed.run_key
    assert isinstance(unchanged, SkipReason)
    assert context.cursor == changed.run_key


def test_the_replay_sensor_skips_a_live_source() -> None:
    context = build_sensor_context(resources={"price_source": LiveSource()})

    assert isinstance(replay_file_sensor(context), SkipReason)
    assert context.cursor is None
