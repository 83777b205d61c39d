"""Whole DAG runs with ``dag.test()``: the output contract, retries, fail-fast, secrets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from airflow.models.taskinstancehistory import TaskInstanceHistory
from airflow.sdk import DAG, DagRunState, TaskInstanceState
from airflow.utils.session import create_session
from btc_airflow.parity import btc_environ, run_once, run_replay
from sqlalchemy import select

from btc_core.fake_api import FakeApi
from btc_core.pipeline import run_cycle, store_for
from btc_core.settings import Settings
from btc_core.transform import export
from tests.plugin import WebhookSink


def live(fake_api: FakeApi, tmp_path: Path) -> dict[str, str]:
    """BTC_* settings for CoinGecko served by the fake API, without failover."""
    return {
        "source": "coingecko",
        "coingecko_url": f"{fake_api.url}/coingecko",
        "failover_source": "none",
        "db_path": str(tmp_path / "airflow.duckdb"),
        "notify": "none",
        "connect_timeout_s": "1",
        "read_timeout_s": "1",
    }


def tries(run_id: str, task_id: str) -> list[str]:
    """The states of the earlier tries of a task, oldest first."""
    with create_session() as session:
        return list(
            session.scalars(
                select(TaskInstanceHistory.state)
                .where(TaskInstanceHistory.run_id == run_id, TaskInstanceHistory.task_id == task_id)
                .order_by(TaskInstanceHistory.try_number)
            )
        )


@pytest.fixture
def printed(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Callable[[], str]:
    """Everything the test's run printed or logged (the run's name in it: the capture worked)."""

    def read() -> str:
        out, err = capfd.readouterr()
        assert "btc_price" in out + err + caplog.text
        return out + err + caplog.text

    return read


def test_dag_test_on_replay_gives_the_plain_path_bytes(
    dag: DAG, settings: Settings, replay_csv: Path, tmp_path: Path
) -> None:
    run_cycle(settings)
    plain = export(store_for(settings))

    out = tmp_path / "airflow.json"
    text = run_replay(dag, replay_csv, tmp_path / "airflow.duckdb", out)

    assert text == plain
    assert out.read_bytes() == plain.encode()
    rows = json.loads(text)
    assert len(rows) == 92  # 2023-10-01 .. 2023-12-31
    assert [r["day"] for r in rows] == sorted(r["day"] for r in rows)
    assert set(rows[0]) == {"day", "avg_price_usd", "n_obs"}


def test_extract_retries_a_server_error(dag: DAG, fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.inject("coingecko", "500")

    run = run_once(dag, **live(fake_api, tmp_path))

    extract = run.get_task_instance("extract")
    assert extract.state == TaskInstanceState.SUCCESS
    assert extract.try_number == 2
    assert tries(run.run_id, "extract") == [TaskInstanceState.FAILED]  # try 1
    assert fake_api.hits("coingecko") == 2


def test_a_non_retryable_failure_fails_at_once(dag: DAG, fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.inject("coingecko", "401")  # a wrong API key: retrying cannot help

    with btc_environ(**live(fake_api, tmp_path)):
        run = dag.test()

    assert run.state == DagRunState.FAILED
    extract = run.get_task_instance("extract")
    assert extract.state == TaskInstanceState.FAILED
    assert extract.try_number == 1
    assert fake_api.hits("coingecko") == 1


def test_api_key_comes_from_a_connection_and_is_not_logged(
    dag: DAG,
    fake_api: FakeApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    printed: Callable[[], str],
) -> None:
    key = "cg-test-key-7c1e"
    monkeypatch.setenv(
        "AIRFLOW_CONN_BTC_COINGECKO", json.dumps({"conn_type": "http", "password": key})
    )

    run_once(dag, **live(fake_api, tmp_path))

    assert fake_api.requests[-1]["headers"]["x-cg-demo-api-key"] == key
    assert key not in printed()


def test_webhook_url_comes_from_a_variable_and_is_not_logged(
    dag: DAG,
    webhook: WebhookSink,
    replay_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    printed: Callable[[], str],
) -> None:
    secret_path = "/services/T000/B000/s3cr3t-token"
    monkeypatch.setenv("AIRFLOW_VAR_BTC_WEBHOOK_URL", webhook.url + secret_path)

    run_once(
        dag,
        source="replay",
        replay_file=str(replay_csv),
        db_path=str(tmp_path / "airflow.duckdb"),
        notify="webhook",
    )

    [(path, body)] = webhook.received
    assert path == secret_path
    assert str(body["text"]).startswith("BTC daily average 2023-12-31")
    assert "s3cr3t-token" not in printed()
