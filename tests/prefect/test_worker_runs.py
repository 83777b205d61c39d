"""Deployment runs through a real process worker: states, retries, failover, data."""

import duckdb
import pytest

from tests.prefect.helpers import completed_run, run_deployment, state_names, task_runs

pytestmark = pytest.mark.integration


def test_a_run_goes_scheduled_to_completed_through_the_worker(
    prefect_server, process_worker, worker_db
):
    with prefect_server.client() as client:
        run = completed_run(client, "btc-pipeline/btc-hourly")
        history = [s.name for s in client.read_flow_run_states(run.id)]
        assert history[0] == "Scheduled" and history[-1] == "Completed"
        assert {"Pending", "Running"} <= set(history)
        assert sorted(task_runs(client, run.id)) == ["extract", "load", "notify"]
    with duckdb.connect(str(worker_db), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone() == (
            2208,
            2208,
        )
        assert con.execute("SELECT count(*) FROM daily_avg").fetchone() == (92,)


@pytest.mark.parametrize(
    ("faults", "retries", "hits"),
    [
        pytest.param(("500", "429"), 2, (3, 0), id="5xx and 429 are retried until success"),
        pytest.param(("truncated",), 0, (1, 1), id="a malformed payload fails over at once"),
        pytest.param(
            ("down",), 3, (4, 1), id="a provider down for good is retried, then failed over"
        ),
    ],
)
def test_extract_retries_what_a_retry_can_cure_then_fails_over(
    prefect_server, process_worker, fake_api, faults, retries, hits
):
    fake_api.inject("coingecko", *faults)
    with prefect_server.client() as client:
        run = completed_run(client, "btc-pipeline/btc-hourly", source="coingecko")
        extract = task_runs(client, run.id)["extract"]
        states = state_names(client, extract)
        assert states.count("Retrying") == retries and extract.run_count == retries + 1
        assert states[-1] == "Completed"
    assert (fake_api.hits("coingecko"), fake_api.hits("coinbase")) == hits


def test_both_providers_down_fails_the_run_and_leaves_data_alone(
    prefect_server, process_worker, fake_api, worker_db
):
    with prefect_server.client() as client:  # data to protect, whichever test ran before
        completed_run(client, "btc-pipeline/btc-hourly")
    with duckdb.connect(str(worker_db), read_only=True) as con:
        before = con.execute("SELECT count(*), sum(price_usd) FROM observations").fetchone()
    fake_api.inject("coingecko", "down")
    fake_api.inject("coinbase", "down")
    with prefect_server.client() as client:
        run = run_deployment(client, "btc-pipeline/btc-hourly", source="coingecko")
        assert run.state.name == "Failed"
        assert (
            "HTTP 503" in run.state.message
            and "after failover from: coingecko" in run.state.message
        )
    with duckdb.connect(str(worker_db), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(price_usd) FROM observations").fetchone() == before
