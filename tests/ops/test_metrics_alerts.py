"""The pipeline's health as Prometheus metrics, scraped by a real Prometheus with the project's
configuration and alert rules: counts and timestamps (never a price), and alerts that fire."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from btc_core.report import recent_days
from btc_core.store import Store
from tests.csvs import rows, with_close, write
from tests.e2e.boundary import close_prices, forbidden, leaks
from tests.e2e.runs import start
from tests.ops.conftest import Ha
from tests.prefect.helpers import wait

pytestmark = pytest.mark.integration

HOURLY, INTERVAL = "btc-pipeline/btc-hourly", "btc-pipeline/btc-interval"
EVERY_BAD = 7  # every 7th row of the replay file gets an unusable price


@pytest.fixture(scope="module")
def bad_rows_csv(replay_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The replay file with one row in 7 priced "n/a" (rejected by validation)."""
    lines = rows(replay_csv)
    spoiled = [with_close(r, "n/a") if i % EVERY_BAD == 0 else r for i, r in enumerate(lines)]
    path = write(tmp_path_factory.mktemp("bad-rows") / "bad.csv", spoiled)
    return path, len(range(0, len(lines), EVERY_BAD))


def scrape(url: str) -> tuple[str, dict[tuple[str, frozenset], float]]:
    """The exposition text and its samples by (name, labels)."""
    text = httpx.get(url, timeout=30).text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def query(ha: Ha, expr: str) -> list[dict]:
    answer = httpx.get(
        f"{ha.stack.url_of('prometheus')}/api/v1/query", params={"query": expr}, timeout=10
    )
    return answer.json()["data"]["result"]


def alerts(ha: Ha, name: str) -> list[dict]:
    found = httpx.get(f"{ha.stack.url_of('prometheus')}/api/v1/alerts", timeout=10).json()
    return [a for a in found["data"]["alerts"] if a["labels"]["alertname"] == name]


def eventually(check, timeout_s: float, what: str):
    """Poll ``check`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(1)
    return result


def test_metrics_count_runs_and_rows_and_alerts_fire_on_failures_and_rejected_rows(
    ha: Ha, bad_rows_csv: tuple[Path, int], replay_csv: Path
):
    bad_csv, n_bad = bad_rows_csv
    exporter = f"{ha.stack.url_of('exporter')}/metrics"
    _, before = scrape(exporter)
    ha.worker()
    with ha.server.client() as client:
        started = [
            start(client, HOURLY),
            start(client, HOURLY, source="no-such-source"),
            start(client, INTERVAL, {"env": {"BTC_REPLAY_FILE": str(bad_csv)}}),
        ]
        good, failed, spoiled = (wait(client, r.id, timeout_s=300) for r in started)
    ha.server.stop_workers()
    assert [good.state.name, failed.state.name, spoiled.state.name] == [
        "Completed",
        "Failed",
        "Completed",
    ]

    def counted() -> tuple[str, dict] | None:
        text, now = scrape(exporter)
        done = value(now, "btc_rows_received_total", deployment=INTERVAL) > value(
            before, "btc_rows_received_total", deployment=INTERVAL
        ) and value(now, "btc_flow_runs_total", deployment=HOURLY, state="Failed") > value(
            before, "btc_flow_runs_total", deployment=HOURLY, state="Failed"
        )
        return (text, now) if done else None

    text, after = eventually(counted, 30, "the exporter counts the three runs")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("btc_flow_runs_total", deployment=HOURLY, state="Completed") == 1
    assert delta("btc_flow_runs_total", deployment=HOURLY, state="Failed") == 1
    assert delta("btc_flow_runs_total", deployment=INTERVAL, state="Completed") == 1
    assert delta("btc_rows_received_total", deployment=INTERVAL) == len(rows(replay_csv))
    assert delta("btc_rows_rejected_total", deployment=INTERVAL) == n_bad
    assert delta("btc_rows_rejected_total", deployment=HOURLY) == 0
    last_success = value(after, "btc_deployment_last_success_timestamp_seconds", deployment=HOURLY)
    assert last_success == pytest.approx(good.end_time.timestamp(), abs=0.01)
    assert value(after, "btc_store_up") == 1
    assert value(after, "btc_store_observations") == len(rows(replay_csv))
    newest_day = datetime(2023, 12, 31, tzinfo=UTC).timestamp()  # the replay file's last day
    assert value(after, "btc_daily_avg_newest_day_timestamp_seconds") == newest_day

    # Strict hybrid: no price in the metrics, neither a close nor a daily average.
    averages = [f"{d['avg_price_usd']:.2f}" for d in recent_days(Store(ha.worker_db), 30)]
    assert leaks(text, forbidden(close_prices(replay_csv, 50) + averages, {})) == []

    # Prometheus scrapes every target with the project's config, the replicas' own metrics too.
    targets = httpx.get(f"{ha.stack.url_of('prometheus')}/api/v1/targets", timeout=10).json()
    health = {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]}
    assert health == {"prefect-api": "up", "haproxy": "up", "btc-pipeline": "up"}
    assert eventually(lambda: query(ha, "count(up{job='prefect-api'} == 1) == 2"), 30, "replicas")

    failures = eventually(
        lambda: [a for a in alerts(ha, "BtcRunsFailed") if a["state"] == "firing"],
        60,
        "BtcRunsFailed firing",
    )
    assert {(a["labels"]["deployment"], a["labels"]["state"]) for a in failures} == {
        (HOURLY, "Failed")
    }
    spike = eventually(
        lambda: [a for a in alerts(ha, "BtcRejectedRowsSpike") if a["state"] == "firing"],
        60,
        "BtcRejectedRowsSpike firing",
    )
    assert [a["labels"]["deployment"] for a in spike] == [INTERVAL]
    # The replay data ends on 2023-12-31: stale, pending for its 10 minutes.
    assert eventually(lambda: alerts(ha, "BtcDailyAverageStale"), 30, "BtcDailyAverageStale")


def test_alert_late_runs_fire_when_the_worker_stops(ha: Ha, figure):
    ha.worker()
    online = "btc_pool_workers_online{pool='btc-process'} == 1"
    eventually(lambda: query(ha, online), 60, "Prometheus sees the worker online")
    ha.server.stop_workers()
    stopped = time.monotonic()
    with ha.server.client() as client:
        late_run = start(client, HOURLY)
        firing = eventually(
            lambda: [a for a in alerts(ha, "BtcRunsLateNoWorker") if a["state"] == "firing"],
            240,
            "BtcRunsLateNoWorker firing",
        )
        fired_after = time.monotonic() - stopped
        assert client.read_flow_run(late_run.id).state.name == "Late"
        client.delete_flow_run(late_run.id)  # nothing Late left for the other tests
    assert [a["labels"]["pool"] for a in firing] == ["btc-process"]
    figure(f"BtcRunsLateNoWorker fired {fired_after:.0f} s after the worker stopped")
