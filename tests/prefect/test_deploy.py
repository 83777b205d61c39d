"""`prefect deploy --all` on fresh servers: the deployments are what prefect.yaml says."""

import subprocess
import sys

import pytest
import yaml
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from btc_core.settings import PROJECT_ROOT
from deployments.deploy import setup_and_deploy
from deployments.processes import prefect_env
from deployments.setup import ALERTS_BLOCK

pytestmark = pytest.mark.integration
SPEC = {
    d["name"]: d for d in yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]
}


def check_deployments(server) -> None:
    with server.client() as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert set(deployments) == set(SPEC)
        for name, spec in SPEC.items():
            deployment = deployments[name]
            assert deployment.work_pool_name == spec["work_pool"]["name"]
            assert deployment.entrypoint == spec["entrypoint"]
            schedules = [s.schedule for s in deployment.schedules]
            for expected, actual in zip(spec.get("schedules", []), schedules, strict=True):
                if "cron" in expected:
                    assert (actual.cron, actual.timezone) == (expected["cron"], "UTC")
                else:
                    assert actual.interval.total_seconds() == expected["interval"]
            assert len(schedules) == len(spec.get("schedules", []))
        for backfill in ("btc-backfill", "btc-backfill-dask"):
            assert deployments[backfill].parameters == SPEC[backfill]["parameters"]
        trigger = [
            a for a in client.read_automations() if a.name.startswith("btc-on-event__automation")
        ]
        assert trigger and trigger[0].trigger.expect == {"btc.replay.updated"}
        pool = client.read_work_pool("btc-process")
        assert pool.type == "process"
        docker = client.read_work_pool("btc-docker")
        assert docker.type == "docker"
        assert deployments["btc-hourly-docker"].work_pool_name == "btc-docker"
        assert {a.name for a in client.read_automations()} >= {
            "btc-run-failed",
            "btc-runs-stuck-late",
        }
        assert client.read_global_concurrency_limit_by_name("btc-duckdb-writer").limit == 1


def test_deploy_all_on_a_fresh_sqlite_server(prefect_server):
    check_deployments(prefect_server)


def test_deploy_all_on_a_fresh_postgres_server_and_again(postgres_server):
    setup_and_deploy(postgres_server.home, postgres_server.api_url)
    setup_and_deploy(postgres_server.home, postgres_server.api_url)  # idempotent
    check_deployments(postgres_server)


def test_the_alerts_webhook_block_holds_the_url_from_the_environment(prefect_server):
    """BTC_ALERTS_WEBHOOK_URL (a secret) becomes the btc-alerts block that the automations use."""
    url = "http://127.0.0.1:9/services/alerts-token"
    result = subprocess.run(
        [sys.executable, "-m", "deployments.setup"],
        env=prefect_env(prefect_server.home, prefect_server.api_url, BTC_ALERTS_WEBHOOK_URL=url),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "alerts: webhook block btc-alerts" in result.stdout and url not in result.stdout
    with prefect_server.in_process():
        block = CustomWebhookNotificationBlock.load(ALERTS_BLOCK)
    assert block.url == url
