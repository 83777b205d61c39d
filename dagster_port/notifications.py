"""The daily-average notification: an asset sensor on ``daily_avg``.

Why a sensor and not a downstream asset or a hook:

- A message is not data. An asset would sit in the lineage graph, go "stale" and be backfilled.
- It fires on every new ``daily_avg`` whatever produced it: the hourly schedule, the eager
  automation, a click in the UI. A hook or run-status sensor is tied to jobs instead.
- It runs outside the run, so a failed send never fails the data run (btc_core's promise: the
  data stays loaded). The failure shows as a failed tick in the UI, and as the cursor only moves
  after a successful send, the next tick tries again: at least once delivery.

Dagster's own Slack integration (``make_slack_on_run_failure_sensor``) works the same way.
The sensor is on by default, like the plain runner's notification (``BTC_NOTIFY=none`` silences
it).
"""

from dagster import (
    DefaultSensorStatus,
    SensorEvaluationContext,
    SkipReason,
    asset_sensor,
)

from btc_core.transform import latest
from dagster_port.assets import daily_avg
from dagster_port.resources import DuckDBStore, Notifier


@asset_sensor(
    asset_key=daily_avg.key,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
)
def daily_avg_notification(
    context: SensorEvaluationContext,
    duckdb: DuckDBStore,
    notifier: Notifier,
) -> SkipReason:
    """Send the latest daily average after each ``daily_avg`` materialization."""
    where = notifier.send(latest(duckdb.store()))
    context.log.info(where)
    return SkipReason(f"{where} (no run needed)")
