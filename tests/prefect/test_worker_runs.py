"""Deployment runs through a real process worker: states, retries, failover, data."""

import duckdb
import pytest

from tests.prefect.helpers import run_deployment, state_names, task_runs

pytestmark = pytest.mark.integration


def test_a_run_goes_scheduled_to_completed_through_the_worker(
    prefect_server, process_worker, worker_db
):
    with prefect_server.client() as client:
        run = run_deployment(client, "btc-pipeline/btc-hourly")
        assert run.state.name == "Completed", run.state.message
        history = [s.name for s in client.read_flow_run_states(run.id)]
        assert history[0] == "Scheduled" and history[-1] == "Completed"
        assert {"Pending", "Running"} <= set(history)
        names = sorted(task_runs(client, run.id))
        assert names[0] == "extract-replay"
        assert [n.rsplit("-", 1)[0] for n in names[1:]] == ["load", "notify", "transform"]
    with duckdb.connect(str(worker_db), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone() == (
            2208,
            2208,
        )
        assert con.execute("SELECT count(*) FROM daily_avg").fetchone() == (92,)


def test_5xx_and_429_are_retried_until_success(prefect_server, process_worker, fake_api):
    fake_api.inject("coingecko", "500", "429")
    with prefect_server.client() as client:
        run = run_deployment(client, "btc-pipeline/btc-hourly", source="coingecko")
        assert run.state.name == "Completed", run.state.message
        extract = task_runs(client, run.id)["extract-coingecko"]
        states = state_names(client, extract)
        assert states.count("Retrying") == 2 and states[-1] == "Completed"
        assert extract.run_count == 3
    assert fake_api.hits("coingecko") == 3 and fake_api.hits("coinbase") == 0


def test_a_malformed_payload_is_not_retried_and_fails_over(
    prefect_server, process_worker, fake_api
):
    fake_api.inject("coingecko", "truncated")
    with prefect_server.client() as client:
        run = run_deployment(client, "btc-pipeline/btc-hourly", source="coingecko")
        assert run.state.name == "Completed", run.state.message
        tasks = task_runs(client, run.id)
        coingecko, coinbase = tasks["extract-coingecko"], tasks["extract-coinbase"]
        assert "Retrying" not in state_names(client, coingecko)
        assert coingecko.state.name == "Failed" and coingecko.run_count == 1
        assert coinbase.state.name == "Completed"
    assert fake_api.hits("coingecko") == 1


def test_both_providers_down_fails_the_run_and_leaves_data_alone(
    prefect_server, process_worker, fake_api, worker_db
):
    with duckdb.connect(str(worker_db), read_only=True) as con:
        before = con.execute("SELECT count(*), sum(price_usd) FROM observations").fetchone()
    fake_api.inject("coingecko", "down")
    fake_api.inject("coinbase", "down")
    with prefect_server.client() as client:
        run = run_deployment(client, "btc-pipeline/btc-hourly", source="coingecko")
        assert run.state.name == "Failed"
        assert "HTTP 503" in run.state.message
    with duckdb.connect(str(worker_db), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(price_usd) FROM observations").fetchone() == before
