"""The pipeline's health as Prometheus metrics, for the alerts of infra/prometheus/btc-alerts.yml.

    python -m deployments.metrics --port 4704      # http://127.0.0.1:4704/metrics

Each scrape asks afresh. From the Prefect API (``PREFECT_API_URL``, through the load balancer):
per deployment its last successful run, creation and schedule period; per work pool its Late runs
and online workers; and, for every run that finished since the exporter started, a count by final
state and the rows it received, rejected and loaded (from its ``btc-run-counts`` table artifact, checked
against a schema; never parsed out of the markdown summary). From
the store the worker writes (``BTC_DB_PATH``, read under the writer lock): row counts, the newest
observation and the newest daily average. Strict hybrid holds: counts and timestamps, never a
price. Run it where the store is (a worker host); without a store it reports ``btc_store_up 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType, WorkerStatus
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.server.schemas.schedules import SCHEDULE_TYPES
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_CLIENT_MAX_RETRIES,
    temporary_settings,
)
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from btc_core.errors import BtcError
from btc_core.pipeline import store_for
from btc_core.report import RUN_COUNTS_KEY, store_stats
from btc_core.settings import Settings
from btc_core.transform import latest

log = logging.getLogger("btc.metrics")

DEFAULT_PORT = 4704
FINAL = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
# A run's end_time is written before its row commits: look back this far for runs not seen yet.
OVERLAP = timedelta(minutes=5)
STORE_WAIT_S = 10.0  # how long a scrape queues behind a writer for the store
# A scrape reports an unreachable API at once (btc_prefect_api_up 0) instead of retrying for a
# minute as Prefect's client does by default: Prometheus gives a scrape 10 s.
CLIENT_FAST = {PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: 5.0}
PAGE = 200
SCHEDULES: TypeAdapter[Any] = TypeAdapter(SCHEDULE_TYPES)
Count = Annotated[int, Field(ge=0, le=10**12)]  # rows of one run: beyond this it is not a count


class RunCounts(BaseModel):
    """The one row of a run's ``btc-run-counts`` table artifact (btc_core.report.run_counts)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    received: Count
    rejected: Count
    duplicates: Count
    inserted: Count
    updated: Count
    unchanged: Count


ONE_ROW: TypeAdapter[tuple[RunCounts]] = TypeAdapter(tuple[RunCounts])


def run_counts(data: object) -> dict[str, int] | None:
    """Rows ``received``, ``rejected`` and ``loaded`` (new + updated) from the data of a
    ``btc-run-counts`` artifact (a JSON table of one row); None for anything else."""
    if not isinstance(data, str):
        return None
    try:
        (counts,) = ONE_ROW.validate_json(data)
    except ValidationError:
        return None
    loaded = counts.inserted + counts.updated
    return {"received": counts.received, "rejected": counts.rejected, "loaded": loaded}


def schedule_period_s(schedule: Any) -> float:
    """Seconds between the next two dates of a schedule (interval, cron or rrule)."""
    server_side = SCHEDULES.validate_python(schedule.model_dump())
    first, second = asyncio.run(server_side.get_dates(2))
    return (second - first).total_seconds()


@dataclass
class FinishedRuns:
    """Counters over the runs that finished since the exporter started, kept between scrapes."""

    cursor: datetime = field(default_factory=lambda: datetime.now(UTC))
    seen: dict[UUID, datetime] = field(default_factory=dict)
    by_state: Counter[tuple[str, str]] = field(default_factory=Counter)
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)

    def update(self, client: SyncPrefectClient, deployments: dict[UUID, str]) -> None:
        """Count the runs of ``deployments`` that became final since the last scrape."""
        asked_at = datetime.now(UTC)
        ended = FlowRunFilter(
            end_time=FlowRunFilterEndTime(after_=self.cursor - OVERLAP),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(FINAL))),
        )
        new = [
            run
            for run in _pages(
                lambda offset: client.read_flow_runs(
                    flow_run_filter=ended, sort=FlowRunSort.END_TIME_DESC, limit=PAGE, offset=offset
                )
            )
            if run.id not in self.seen and run.deployment_id in deployments and run.state
        ]
        for run in new:
            self.seen[run.id] = run.end_time or asked_at
            self.by_state[deployments[run.deployment_id], run.state.type.value.title()] += 1
        self._count_rows(client, {run.id: deployments[run.deployment_id] for run in new})
        self.cursor = asked_at
        self.seen = {k: v for k, v in self.seen.items() if v >= asked_at - 2 * OVERLAP}

    def _count_rows(self, client: SyncPrefectClient, runs: dict[UUID, str]) -> None:
        counted: set[UUID] = set()
        ids = list(runs)
        for start in range(0, len(ids), PAGE):
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[RUN_COUNTS_KEY]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=ids[start : start + PAGE]),
                ),
                sort=ArtifactSort.CREATED_DESC,
            )
            for artifact in artifacts:  # newest first: the newest of each run decides
                run_id = artifact.flow_run_id
                if run_id is None or run_id in counted:
                    continue
                counted.add(run_id)
                counts = run_counts(artifact.data)
                if counts is None:
                    log.warning(
                        "run %s: its %s artifact is not one row of counts", run_id, RUN_COUNTS_KEY
                    )
                    continue
                for kind, n in counts.items():
                    self.rows[runs[run_id], kind] += n


def _pages(read: Any) -> Iterator[Any]:
    offset = 0
    while True:
        page = read(offset)
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


class PipelineCollector(Collector):
    """Collects everything on each scrape; only :class:`FinishedRuns` keeps state."""

    def __init__(self, settings: Settings):
        self.settings = settings.replace(lock_timeout_s=min(settings.lock_timeout_s, STORE_WAIT_S))
        self.finished = FinishedRuns()
        self.lock = threading.Lock()  # two scrapes at once must not count a run twice

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            yield from self._control_plane()
            yield from self._store()

    def _control_plane(self) -> Iterator[Metric]:
        api_up = GaugeMetricFamily(
            "btc_prefect_api_up", "1 if the exporter read the Prefect API on this scrape"
        )
        try:
            with temporary_settings(CLIENT_FAST), get_client(sync_client=True) as client:
                metrics = list(self._read_api(client))
        except Exception as exc:  # any failure of the API makes this scrape say so
            log.warning(
                "Prefect API unreachable: %s", str(exc).splitlines()[0] if str(exc) else exc
            )
            api_up.add_metric([], 0)
            yield api_up
            return
        api_up.add_metric([], 1)
        yield api_up
        yield from metrics

    def _read_api(self, client: SyncPrefectClient) -> Iterator[Metric]:
        flows = {f.id: f.name for f in client.read_flows()}
        deployments = client.read_deployments()
        names = {d.id: f"{flows.get(d.flow_id, '?')}/{d.name}" for d in deployments}
        yield from self._deployments(client, deployments, names)
        yield from self._pools(client)
        self.finished.update(client, names)
        runs = CounterMetricFamily(
            "btc_flow_runs",
            "Runs that reached a final state since the exporter started",
            labels=["deployment", "state"],
        )
        for name in sorted(names.values()):
            for state in FINAL:
                label = state.value.title()
                runs.add_metric([name, label], self.finished.by_state[name, label])
        yield runs
        for kind, text in (
            ("received", "Rows the source returned"),
            ("rejected", "Rows validation rejected"),
            ("loaded", "Observations inserted or updated"),
        ):
            rows = CounterMetricFamily(
                f"btc_rows_{kind}",
                f"{text}, summed over the runs finished since the exporter started",
                labels=["deployment"],
            )
            for name in sorted(names.values()):
                rows.add_metric([name], self.finished.rows[name, kind])
            yield rows

    def _deployments(
        self, client: SyncPrefectClient, deployments: list[Any], names: dict[UUID, str]
    ) -> Iterator[Metric]:
        created = GaugeMetricFamily(
            "btc_deployment_created_timestamp_seconds",
            "When the deployment was created",
            labels=["deployment"],
        )
        success = GaugeMetricFamily(
            "btc_deployment_last_success_timestamp_seconds",
            "End of the deployment's newest Completed run (absent if none)",
            labels=["deployment"],
        )
        period = GaugeMetricFamily(
            "btc_deployment_schedule_period_seconds",
            "Shortest period of the deployment's active schedules (absent if none)",
            labels=["deployment"],
        )
        completed = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
        )
        for deployment in deployments:
            label = [names[deployment.id]]
            if deployment.created:
                created.add_metric(label, deployment.created.timestamp())
            newest = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=completed,
                sort=FlowRunSort.END_TIME_DESC,
                limit=1,
            )
            if newest and newest[0].end_time:
                success.add_metric(label, newest[0].end_time.timestamp())
            periods = [schedule_period_s(s.schedule) for s in deployment.schedules if s.active]
            if periods:
                period.add_metric(label, min(periods))
        yield from (created, success, period)

    def _pools(self, client: SyncPrefectClient) -> Iterator[Metric]:
        late = GaugeMetricFamily(
            "btc_pool_late_runs", "Runs of the pool in state Late", labels=["pool"]
        )
        online = GaugeMetricFamily(
            "btc_pool_workers_online", "Workers of the pool Prefect sees ONLINE", labels=["pool"]
        )
        late_state = FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))
        )
        for pool in client.read_work_pools():
            n_late = client.count_flow_runs(
                flow_run_filter=late_state,
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool.name])),
            )
            workers = client.read_workers_for_work_pool(pool.name)
            late.add_metric([pool.name], n_late)
            online.add_metric([pool.name], sum(w.status == WorkerStatus.ONLINE for w in workers))
        yield from (late, online)

    def _store(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("btc_store_up", "1 if the exporter read the store on this scrape")
        settings = self.settings
        if not settings.store_url and not settings.db_path.exists():
            up.add_metric([], 0)  # nothing to read, and the exporter must not create the file
            yield up
            return
        store = store_for(settings)
        try:
            stats = store_stats(store)
            newest = latest(store)
        except BtcError as exc:
            log.warning("store unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "btc_store_observations", "Rows in observations", value=stats["observations"]
        )
        yield GaugeMetricFamily(
            "btc_daily_avg_days", "Rows (UTC days) in daily_avg", value=stats["daily_avg_rows"]
        )
        if stats["last_observation"]:
            moment = datetime.fromisoformat(str(stats["last_observation"])).replace(tzinfo=UTC)
            yield GaugeMetricFamily(
                "btc_store_newest_observation_timestamp_seconds",
                "Time of the newest observation (UTC)",
                value=moment.timestamp(),
            )
        if newest is not None:
            day = datetime.combine(newest.current.day, datetime.min.time(), UTC)
            yield GaugeMetricFamily(
                "btc_daily_avg_newest_day_timestamp_seconds",
                "Start (00:00 UTC) of the newest day in daily_avg",
                value=day.timestamp(),
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except BtcError as exc:
        raise SystemExit(f"btc metrics: {exc}") from None
    registry = CollectorRegistry()
    registry.register(PipelineCollector(settings))
    server, thread = start_http_server(args.port, args.host, registry)
    log.info("serving http://%s:%d/metrics", args.host, args.port)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
