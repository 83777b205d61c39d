"""The one ``Definitions`` object: ``dagster dev -m dagster_port.definitions -h 127.0.0.1``.

Resources follow the environment (``BTC_*`` variables, read by btc_core): ``BTC_SOURCE=replay``
(the default) gives the offline replay source, ``coingecko`` or ``coinbase`` the live one.

Runs use the in-process executor: every step opens the one DuckDB file, so steps cannot run in
parallel anyway, and a process per step (Dagster's default) costs seconds of start-up each.
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from btc_core.settings import Settings
from dagster_port.assets import btc_price, btc_price_by_day, daily_avg, daily_avg_by_day
from dagster_port.automation import (
    automation_sensor,
    backfill_job,
    hourly_job,
    hourly_schedule,
    replay_file_sensor,
)
from dagster_port.checks import CHECKS
from dagster_port.notifications import daily_avg_notification
from dagster_port.resources import resources_for


def build(settings: Settings) -> Definitions:
    """Everything Dagster shows, wired to the resources ``settings`` describe."""
    return Definitions(
        assets=[btc_price, daily_avg, btc_price_by_day, daily_avg_by_day],
        asset_checks=CHECKS,
        jobs=[hourly_job, backfill_job],
        schedules=[hourly_schedule],
        sensors=[automation_sensor, replay_file_sensor, daily_avg_notification],
        resources=resources_for(settings),
        executor=in_process_executor,
    )


defs = build(Settings.from_env())
