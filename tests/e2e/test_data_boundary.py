"""The data boundary on the embedded SQLite backend: after runs through a Docker worker and a
process worker in strict hybrid mode, the control plane's database holds no price, no API key,
no webhook URL and no storage secret (Postgres: test_production_stack.py)."""

from __future__ import annotations

import uuid

import pytest
from prefect_aws import AwsClientParameters, AwsCredentials
from prefect_aws.secrets_manager import AwsSecret

from btc_core.fake_api import FakeApi
from tests.e2e.boundary import close_prices, daily_averages, forbidden, leaks, sqlite_text
from tests.e2e.hosts import S3, WebhookSink, WorkerHost
from tests.e2e.runs import run, settle

pytestmark = pytest.mark.integration
# prefect.yaml gives the process deployments BTC_NOTIFY=stdout, and a job's env wins over the
# worker's: stdout lines become logs on the control plane, so strict mode overrides it per run.
STRICT_PROCESS_JOB = {"env": {"BTC_NOTIFY": "webhook"}}


def run_both_workers(client, docker_host: WorkerHost) -> None:
    """A replay cycle in a container, a CoinGecko cycle (API key) in a process; both Completed
    and settled (their last logs and events written)."""
    for flow_run in (
        run(client, "btc-pipeline/btc-hourly-docker", docker_host.job_variables()),
        run(client, "btc-pipeline/btc-hourly", STRICT_PROCESS_JOB, source="coingecko"),
    ):
        assert flow_run.state.name == "Completed", flow_run.state.message
        settle(client, flow_run)


def test_the_sqlite_control_plane_stores_no_price_key_or_webhook_url(
    hybrid_server,
    docker_worker,
    process_worker,
    docker_host: WorkerHost,
    process_host: WorkerHost,
    secrets: dict[str, str],
    replay_csv,
    fake_api_server: FakeApi,
    webhook_sink: WebhookSink,
):
    with hybrid_server.client() as client:
        run_both_workers(client, docker_host)
    # the secrets did their work on the worker side
    assert (
        fake_api_server.requests[-1]["headers"]["x-cg-demo-api-key"]
        == secrets["BTC_COINGECKO_API_KEY"]
    )
    assert len(webhook_sink.received) >= 2
    # a worker without an S3 setting keeps results on its own disk (Prefect's default)
    assert any((hybrid_server.home / "storage").iterdir())
    prices = (
        close_prices(replay_csv) + daily_averages(docker_host.db) + daily_averages(process_host.db)
    )
    text = sqlite_text(hybrid_server.home)
    # the scan sees what the server keeps: logs, artifacts, deployments
    assert "daily_avg refreshed for 92 day(s)" in text
    assert "rows received" in text and "btc-hourly-docker" in text
    assert leaks(text, forbidden(prices, secrets)) == []
    # and it would see a leak: full artifacts (a table of daily averages) live up there
    with hybrid_server.client() as client:
        full = run(client, "btc-pipeline/btc-hourly", {"env": {"BTC_ARTIFACTS": "full"}})
        settle(client, full)
    leaked = leaks(sqlite_text(hybrid_server.home), forbidden(daily_averages(process_host.db), {}))
    assert leaked, "full artifacts' prices should have reached the control plane"


def test_an_aws_secret_block_keeps_only_the_secrets_name_on_the_control_plane(
    hybrid_server, s3: S3, monkeypatch: pytest.MonkeyPatch
):
    """AWS Secrets Manager (moto on 127.0.0.1) through prefect-aws: the block stores a name and
    an endpoint; the value is read on the worker side with the worker's AWS keys."""
    for name, value in s3.worker_env().items():
        monkeypatch.setenv(name, value)  # this process plays the worker
    name, value = f"btc/coingecko-api-key-{uuid.uuid4().hex[:6]}", f"CG-{uuid.uuid4().hex}"
    credentials = AwsCredentials(
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3.endpoint_url),
    )
    credentials.get_secrets_manager_client().create_secret(Name=name, SecretString=value)
    with hybrid_server.client() as client:
        AwsSecret(aws_credentials=credentials, secret_name=name).save("btc-aws-secret")
        assert AwsSecret.load("btc-aws-secret").read_secret() == value  # on the worker side
        stored = client.read_block_document_by_name(
            "btc-aws-secret", "aws-secret", include_secrets=True
        )
    assert stored.data["secret_name"] == name  # all that the control plane holds: a name
    assert value not in str(stored.data) and s3.secret_key not in str(stored.data)
    assert value not in sqlite_text(hybrid_server.home)
