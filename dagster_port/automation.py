"""When things run: an hourly schedule, declarative automation, and a replay-file sensor.

- Cron: ``btc_hourly_schedule`` materializes ``btc_price`` (and its checks) every hour.
- Declarative: ``daily_avg`` follows every ``btc_price`` update, however it came (schedule,
  sensor, a click), through its automation condition, evaluated every 30 s by
  ``btc_automation``, which is on by default. Scheduling only the root and letting automation
  do the rest is Dagster's answer where Prefect would use an interval or an event trigger
  (Dagster has no interval schedule type).
- Event: ``replay_file_sensor`` starts the hourly job when the replay file appears or changes.
- Backfills: ``btc_backfill`` is the daily-partitioned job; a range of days loads in one run.
"""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from dagster_port.assets import BACKFILL_GROUP, btc_price, daily_avg
from dagster_port.resources import PriceSource

hourly_job = define_asset_job(
    "btc_hourly",
    selection=AssetSelection.assets(btc_price),
    description="Load the latest observations; daily_avg follows by automation.",
)

backfill_job = define_asset_job(
    "btc_backfill",
    selection=AssetSelection.groups(BACKFILL_GROUP),
    description="Load whole UTC days and their averages: pick a range of partitions.",
)

hourly_schedule = ScheduleDefinition(
    name="btc_hourly_schedule",
    job=hourly_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
)

automation_sensor = AutomationConditionSensorDefinition(
    "btc_automation",
    target=AssetSelection.assets(daily_avg),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)


@sensor(job=hourly_job, minimum_interval_seconds=30)
def replay_file_sensor(
    context: SensorEvaluationContext, price_source: PriceSource
) -> RunRequest | SkipReason:
    """Run the hourly job when the replay file is new or changed (path, mtime and size)."""
    fingerprint = price_source.fingerprint()
    if fingerprint is None:
        return SkipReason("no replay file to watch (live source, or the file is missing)")
    if fingerprint == context.cursor:
        return SkipReason("replay file unchanged")
    context.update_cursor(fingerprint)
    return RunRequest(run_key=fingerprint)
