"""The flow's own features, run in-process against the real server: cache, secrets, backfill."""

import asyncio
import base64
import json
import logging
import time
import uuid

import duckdb
import pytest
from prefect.blocks.system import Secret
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import PrefectHTTPStatusError
from prefect.logging.handlers import APILogWorker

from flows.btc import CHART_KEY, btc_backfill, btc_pipeline
from tests.prefect.helpers import all_task_runs, completed_run, logs, task_runs

pytestmark = pytest.mark.integration


def pipeline(**parameters):
    """One run of the (async) flow in this process; its final state."""
    return asyncio.run(btc_pipeline(return_state=True, **parameters))


def extract_state(server, flow_state) -> str:
    with server.client() as client:
        tasks = task_runs(client, flow_state.state_details.flow_run_id)
    return tasks["extract"].state.name


def test_extract_is_cached_inside_the_expiration_and_not_after(against, monkeypatch):
    monkeypatch.setenv("BTC_EXTRACT_CACHE_S", "8")
    monkeypatch.setenv("BTC_CHART", "none")  # quick runs: both inside the expiration
    first = pipeline()
    second = pipeline()
    assert (extract_state(against, first), extract_state(against, second)) == (
        "Completed",
        "Cached",
    )
    time.sleep(8.5)
    assert extract_state(against, pipeline()) == "Completed"


def test_a_replaced_replay_file_is_not_served_from_cache(
    against, monkeypatch, replay_csv, tmp_path
):
    copy = tmp_path / "replay.csv"
    copy.write_bytes(replay_csv.read_bytes())
    monkeypatch.setenv("BTC_REPLAY_FILE", str(copy))
    monkeypatch.setenv("BTC_EXTRACT_CACHE_S", "600")
    assert extract_state(against, pipeline()) == "Completed"
    assert extract_state(against, pipeline()) == "Cached"  # same file: the cache serves it
    copy.write_bytes(replay_csv.read_bytes().replace(b"42280.14", b"42280.15"))
    assert extract_state(against, pipeline()) == "Completed"
    with duckdb.connect(str(tmp_path / "btc.duckdb"), read_only=True) as con:
        newest = con.execute("SELECT price_usd FROM observations ORDER BY ts DESC LIMIT 1")
        assert newest.fetchone() == (42280.15,)  # the new file's price was loaded


def test_secrets_from_blocks_reach_the_api_and_the_hook_but_no_log_or_parameter(
    against, monkeypatch, fake_api, webhook
):
    key, token = f"CG-{uuid.uuid4().hex}", uuid.uuid4().hex
    Secret(value=key).save("btc-coingecko-api-key", overwrite=True)
    Secret(value=f"{webhook.url}/services/{token}").save("btc-webhook-url", overwrite=True)
    monkeypatch.setenv("BTC_SECRETS_FROM", "prefect-blocks")
    monkeypatch.setenv("BTC_NOTIFY", "webhook")
    monkeypatch.setenv("BTC_COINGECKO_URL", f"{fake_api.url}/coingecko")
    ok = pipeline(source="coingecko")
    assert ok.is_completed()
    assert fake_api.requests[-1]["headers"]["x-cg-demo-api-key"] == key
    assert webhook.received and webhook.received[-1][1]["text"].startswith("BTC daily average")
    # now the hook is gone: the failure must not leak the URL either
    Secret(value=f"http://127.0.0.1:9/services/{token}").save("btc-webhook-url", overwrite=True)
    failed = pipeline(source="coingecko")
    assert failed.is_failed() and "webhook" in failed.message
    with against.client() as client:
        for state in (ok, failed):
            run = client.read_flow_run(state.state_details.flow_run_id)
            text = json.dumps(run.parameters) + (run.state.message or "")
            text += "\n".join(log.message for log in logs(client, run.id))
            assert key not in text and token not in text
            assert "Secret" not in json.dumps(run.parameters)


def test_backfill_through_the_worker_maps_chunks_and_reports_progress(
    prefect_server, process_worker, worker_db
):
    with prefect_server.client() as client:
        run = completed_run(
            client,
            "btc-backfill/btc-backfill",
            start="2023-11-01",
            end="2023-11-06",
            max_parallel=3,
        )
        names = [t.name for t in all_task_runs(client, run.id)]
        # a replay file is one chunk, as for `btc backfill` (a live API: its request windows)
        assert sum(n.startswith("extract-") for n in names) == 1
        assert sum(n.startswith("load") for n in names) == 1
        progress = client.read_artifacts(artifact_filter=None)
        assert any(a.key == "btc-backfill-progress" and a.data == 100.0 for a in progress)
    with duckdb.connect(str(worker_db), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM daily_avg WHERE day BETWEEN DATE '2023-11-01' AND DATE '2023-11-06'"
        ).fetchone() == (6,)


def test_backfill_in_process_has_no_duplicate_rows(against, tmp_path):
    state = btc_backfill(start="2023-12-01", end="2023-12-04", max_parallel=4, return_state=True)
    assert state.result().startswith("backfilled")
    with against.client() as client:
        names = sorted(
            r.name.rsplit("-", 1)[0] for r in all_task_runs(client, state.state_details.flow_run_id)
        )
    assert names == ["chart", "extract", "load"]  # the chart too (it once never ran)
    APILogWorker.drain_all(timeout=30)  # the run's logs are sent in batches
    with against.client() as client:
        records = logs(client, state.state_details.flow_run_id)
    assert any(r.message == "backfill: 1 of 1 chunks loaded" for r in records)
    assert [r.message for r in records if r.level >= logging.WARNING] == []  # a clean run is quiet
    assert btc_backfill(start="2023-12-03", end="2023-12-05", max_parallel=2).endswith(
        ": 24 observations new or updated"
    )
    with duckdb.connect(str(tmp_path / "btc.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone() == (
            120,
            120,
        )


def run_artifacts(server, state) -> dict[str, object]:
    """The artifacts of one flow run by key, as the run page lists them."""
    with server.client() as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    return {a.key: a for a in found}


def test_a_run_publishes_summary_table_and_an_inline_90_day_chart(against):
    artifacts = run_artifacts(against, pipeline())
    assert {"btc-run-summary", "btc-daily-averages", CHART_KEY} <= set(artifacts)
    assert "| source used | replay |" in artifacts["btc-run-summary"].data
    table = json.loads(artifacts["btc-daily-averages"].data)
    assert table[0]["day"] == "2023-12-31" and len(table) == 14
    chart = artifacts[CHART_KEY]
    assert chart.type == "markdown"
    encoded = chart.data.split("data:image/png;base64,", 1)[1].rstrip(")\n")
    assert base64.b64decode(encoded).startswith(b"\x89PNG")
    assert "2023-10-03 .. 2023-12-31" in chart.data  # 90 complete days up to the newest


def test_the_chart_is_published_once_per_change_not_every_run(against, monkeypatch, tmp_path):
    """Complete days only: the same chart every hour of a day. The first run publishes it, the
    next run on the same data does not; a change of what it would publish (here the mode, as
    a new complete day changes its rows) publishes again."""
    first, second = run_artifacts(against, pipeline()), run_artifacts(against, pipeline())
    assert CHART_KEY in first and CHART_KEY not in second
    assert "btc-run-summary" in second and "btc-daily-averages" in second
    monkeypatch.setenv("BTC_CHART", "link")
    assert CHART_KEY in run_artifacts(against, pipeline())
    assert (tmp_path / "charts" / ".chart-published").read_text().split()[1] == "link"


def test_strict_mode_publishes_only_a_link_to_the_worker_side_chart(against, monkeypatch, tmp_path):
    monkeypatch.setenv("BTC_ARTIFACTS", "summary")
    monkeypatch.setenv("BTC_CHART_URL", "https://charts.internal.example/btc/")
    artifacts = run_artifacts(against, pipeline())
    assert "btc-daily-averages" not in artifacts
    chart = artifacts[CHART_KEY]
    assert chart.data.endswith("(https://charts.internal.example/btc/btc-daily-avg-2023-12-31.png)")
    assert (tmp_path / "charts" / "btc-daily-avg-2023-12-31.png").read_bytes()[:4] == b"\x89PNG"
    assert "base64" not in chart.data and "$" not in (artifacts["btc-run-summary"].data)


def test_lookback_hours_with_the_default_replay_source_reads_the_whole_file(against):
    """The parameter asks live sources for a window; replay (the default) ignores it. Before the
    fix, the flow looked at its ``source`` parameter (None), not at the resolved source, and
    windowed the 2023 replay file to the last 24 hours: no observation, a failed run."""
    state = pipeline(lookback_hours=24)
    assert state.is_completed(), state.message
    assert state.result().startswith("loaded 2208 new")


@pytest.mark.parametrize(
    ("flow_call", "message"),
    [
        (
            lambda: btc_backfill(
                start="2023-12-30", end="2023-12-31", max_parallel=0, return_state=True
            ),
            "max_parallel: Input should be greater than or equal to 1",
        ),
        (
            lambda: btc_backfill(
                start="2023-12-30", end="2023-12-31", max_parallel=-1, return_state=True
            ),
            "max_parallel: Input should be greater than or equal to 1",
        ),
        (
            lambda: pipeline(lookback_hours=1e8),
            "lookback_hours: Input should be less than or equal to 8784",
        ),
    ],
    ids=["max_parallel=0", "max_parallel=-1", "lookback_hours=1e8"],
)
def test_out_of_range_parameters_fail_before_the_run_starts(against, flow_call, message):
    """Issue 31 row 2: -1 Completed loading nothing, 0 a ValueError traceback, 1e8 an
    OverflowError; now Prefect's parameter validation refuses each with one line, no task runs."""
    state = flow_call()
    assert state.is_failed() and message in state.message, state.message
    with against.client() as client:
        assert all_task_runs(client, state.state_details.flow_run_id) == []


def test_a_deployment_run_with_an_out_of_range_parameter_is_refused(prefect_server):
    """The bounds are in the deployment's parameter schema: the server refuses the run."""
    with prefect_server.client() as client:
        deployment = client.read_deployment_by_name("btc-backfill/btc-backfill")
        schema = deployment.parameter_openapi_schema["properties"]["max_parallel"]
        assert (schema["minimum"], schema["maximum"]) == (1, 32)
        with pytest.raises(PrefectHTTPStatusError, match="max_parallel"):
            client.create_flow_run_from_deployment(deployment.id, parameters={"max_parallel": 0})
