"""Hostile run artifacts (issue #31, row 13): a Completed deployment run on a real Prefect server
whose counts artifact is spoilt, scraped by the metrics exporter (deployments.metrics) beside a
good run of the same deployment. The API stays up (``btc_prefect_api_up 1``), both runs count by
state, and only the good run's rows are counted. It used to parse the markdown summary: a row
with two values instead of three made the whole scrape report the API down."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import ArtifactCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed

from btc_core.fake_api import FULLWIDTH
from btc_core.report import RUN_COUNTS_KEY
from btc_core.settings import Settings
from deployments.metrics import PipelineCollector
from tests.prefect.conftest import Server, _serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]  # a hang fails its case

GOOD = {
    "received": 24,
    "rejected": 2,
    "duplicates": 0,
    "inserted": 20,
    "updated": 2,
    "unchanged": 0,
}
SUMMARY = "| rows received | 24 |\n| observations new / updated / unchanged | 5 / 2 |\n"


def row(**change: object) -> str:
    return json.dumps([{**GOOD, **change}])


# name -> (key, type, data) of the spoilt run's artifact
ARTIFACTS: dict[str, tuple[str, str, object]] = {
    "a summary row with two values, no counts table": ("btc-run-summary", "markdown", SUMMARY),
    "the counts as markdown": (RUN_COUNTS_KEY, "markdown", SUMMARY),
    "a count missing": (RUN_COUNTS_KEY, "table", json.dumps([{"received": 24, "rejected": 2}])),
    "an extra column": (RUN_COUNTS_KEY, "table", row(price_usd=42000.5)),
    "counts as text": (RUN_COUNTS_KEY, "table", row(received="24")),
    "counts as floats": (RUN_COUNTS_KEY, "table", row(received=24.0)),
    "a count in exponent form": (RUN_COUNTS_KEY, "table", row(received=2.4e1)),
    "a negative count": (RUN_COUNTS_KEY, "table", row(rejected=-2)),
    "a NaN count": (RUN_COUNTS_KEY, "table", row(received=float("nan"))),
    "an infinite count": (RUN_COUNTS_KEY, "table", row(received=float("inf"))),
    "a count of 400 digits": (RUN_COUNTS_KEY, "table", row(received=10**399)),
    "a count of 10**13": (RUN_COUNTS_KEY, "table", row(inserted=10**13)),
    "a boolean count": (RUN_COUNTS_KEY, "table", row(received=True)),
    "a null count": (RUN_COUNTS_KEY, "table", row(received=None)),
    "a count as an object": (RUN_COUNTS_KEY, "table", row(received={"n": 24})),
    "two rows": (RUN_COUNTS_KEY, "table", json.dumps([GOOD, GOOD])),
    "no row": (RUN_COUNTS_KEY, "table", "[]"),
    "an object, not a table": (RUN_COUNTS_KEY, "table", json.dumps(GOOD)),
    "not JSON": (RUN_COUNTS_KEY, "table", "received=24"),
    "truncated JSON": (RUN_COUNTS_KEY, "table", row()[:40]),
    "empty data": (RUN_COUNTS_KEY, "table", ""),
    "no data": (RUN_COUNTS_KEY, "table", None),
    "a JSON array instead of its text": (RUN_COUNTS_KEY, "table", [GOOD]),
    "fullwidth digits": (RUN_COUNTS_KEY, "table", row(received="24".translate(FULLWIDTH))),
    "JSON 10,000 levels deep": (RUN_COUNTS_KEY, "table", "[" * 10_000 + "]" * 10_000),
    "a 1 MB table": (RUN_COUNTS_KEY, "table", json.dumps([GOOD] * 12_000)),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    gen = _serve(tmp_path_factory.mktemp("prefect-artifacts"))
    yield next(gen)
    gen.close()


def completed_run(client: SyncPrefectClient, deployment_id: uuid.UUID, artifact: tuple) -> None:
    """A run of the deployment, Completed, with ``artifact`` (key, type, data)."""
    run = client.create_flow_run_from_deployment(deployment_id)
    client.set_flow_run_state(run.id, Completed(), force=True)
    key, kind, data = artifact
    client.create_artifact(ArtifactCreate(key=key, type=kind, data=data, flow_run_id=run.id))


def scrape(server: Server, tmp: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape of a new exporter: sample (name, labels) -> value."""
    collector = PipelineCollector(Settings.from_env(db_path=tmp / "none.duckdb"))
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        families = list(collector.collect())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


@pytest.mark.parametrize("name", ARTIFACTS)
def test_a_spoilt_counts_artifact_is_not_counted_and_the_api_stays_up(name, server, tmp_path):
    with server.client() as client:
        flow_id = client.create_flow_from_name("btc-pipeline")
        deployment = f"hostile-{uuid.uuid4().hex[:8]}"
        deployment_id = client.create_deployment(flow_id, deployment)
        completed_run(client, deployment_id, (RUN_COUNTS_KEY, "table", row()))
        completed_run(client, deployment_id, ARTIFACTS[name])
    metrics = scrape(server, tmp_path)
    label = (("deployment", f"btc-pipeline/{deployment}"),)
    assert metrics[("btc_prefect_api_up", ())] == 1
    assert metrics[("btc_flow_runs_total", (*label, ("state", "Completed")))] == 2
    assert metrics[("btc_rows_received_total", label)] == GOOD["received"]
    assert metrics[("btc_rows_rejected_total", label)] == GOOD["rejected"]
    assert metrics[("btc_rows_loaded_total", label)] == GOOD["inserted"] + GOOD["updated"]
