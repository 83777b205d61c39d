"""The data boundary on the embedded SQLite backend: after runs through a Docker worker and a
process worker in strict hybrid mode, the control plane's database holds no price, no API key,
no webhook URL and no storage secret (Postgres: test_production_stack.py). A replay file of
marked valid, bad and malformed rows, run hourly and as a per-day backfill, leaves none of its
values in the SQLite file nor in a pg_dump of a Postgres-backed server."""

from __future__ import annotations

import uuid

import duckdb
import pytest
from prefect_aws import AwsClientParameters, AwsCredentials
from prefect_aws.secrets_manager import AwsSecret

from btc_core.fake_api import FakeApi
from deployments.deploy import setup_and_deploy
from deployments.runs import stop_schedules
from tests.e2e.boundary import (
    artifact_events,
    close_prices,
    daily_averages,
    forbidden,
    leaks,
    marked_file,
    pg_dump_text,
    sqlite_text,
)
from tests.e2e.hosts import S3, WorkerHost
from tests.e2e.runs import run, settle
from tests.plugin import WebhookSink
from tests.prefect.conftest import Server, postgres_serve

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


def run_the_marked_file(server: Server, path, db) -> None:
    """btc-hourly and a per-day btc-backfill of the marked file on a strict process worker, into
    a DuckDB file of their own; both Completed and settled."""
    job = {"env": {"BTC_NOTIFY": "webhook", "BTC_REPLAY_FILE": str(path), "BTC_DB_PATH": str(db)}}
    with server.client() as client:
        for flow_run in (
            run(client, "btc-pipeline/btc-hourly", job),
            run(client, "btc-backfill/btc-backfill", job, start="2023-12-30", end="2023-12-31"),
        ):
            assert flow_run.state.name == "Completed", flow_run.state.message
            settle(client, flow_run)


def test_no_value_of_a_marked_file_reaches_the_sqlite_control_plane(
    hybrid_server, process_worker, replay_csv, tmp_path
):
    """The extract task used to log each rejected row with its raw values, once per day."""
    markers = marked_file(replay_csv, tmp_path / "marked.csv")
    run_the_marked_file(hybrid_server, tmp_path / "marked.csv", tmp_path / "marked.duckdb")
    text = sqlite_text(hybrid_server.home)
    assert "line 9: non-numeric price" in text  # the scan sees the value-free report
    assert leaks(artifact_events(hybrid_server.home), markers) == []
    with duckdb.connect(str(tmp_path / "marked.duckdb"), read_only=True) as con:
        (n,) = con.execute(
            "SELECT count(*) FROM observations WHERE price_usd = 31337.0101"
        ).fetchone()
    assert n == 1, "the marked valid rows went where they belong: the worker's DuckDB"
    assert leaks(text, markers) == []


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory, strict_env: dict[str, str]):
    """A server on the local PostgreSQL (a database of its own), set up, with a strict process
    worker polling every second."""
    with postgres_serve(tmp_path_factory.mktemp("prefect-pg-boundary"), first_port=4850) as server:
        setup_and_deploy(server.home, server.api_url)
        with server.client() as client:
            stop_schedules(client)
        server.worker(pool="btc-process", poll_s=1.0, **strict_env)
        yield server


def test_no_value_of_a_marked_file_reaches_a_postgres_control_plane(
    postgres_server: Server, replay_csv, tmp_path
):
    markers = marked_file(replay_csv, tmp_path / "marked.csv")
    run_the_marked_file(postgres_server, tmp_path / "marked.csv", tmp_path / "marked.duckdb")
    dump = pg_dump_text(postgres_server.db_url.rsplit("/", 1)[1])
    assert "line 9: non-numeric price" in dump
    assert leaks(dump, markers) == []


def test_full_artifacts_are_copied_into_the_events_table(hybrid_server, process_worker, tmp_path):
    """docs/hybrid.md: pruning artifacts leaves their copies in the events until they expire."""
    db = tmp_path / "full.duckdb"
    job = {"env": {"BTC_ARTIFACTS": "full", "BTC_NOTIFY": "none", "BTC_DB_PATH": str(db)}}
    with hybrid_server.client() as client:
        full = run(client, "btc-pipeline/btc-hourly", job)
        assert full.state.name == "Completed", full.state.message
        settle(client, full)
    copies = artifact_events(hybrid_server.home)
    assert leaks(copies, forbidden(daily_averages(db, 3), {})), "the table's prices are in events"
    assert "data:image/png;base64," in copies, "so is the inline chart"
