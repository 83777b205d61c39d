"""The DAG file imports cleanly and declares the schedule and retry policy of the issue."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import DAG
from airflow.sdk.definitions.retry_policy import RetryAction
from btc_airflow import env

from btc_core.errors import BadPayload, ServerError


def test_dagbag_imports_without_errors() -> None:
    bag = DagBag(dag_folder=env.DAGS_FOLDER)
    assert bag.import_errors == {}
    assert bag.dag_ids == ["btc_price"]


def test_schedule_and_concurrency(dag: DAG) -> None:
    assert dag.schedule == "@hourly"
    assert dag.catchup is False
    assert dag.max_active_runs == 1  # DuckDB has one writer


def test_tasks_form_a_chain(dag: DAG) -> None:
    order = ["extract", "load", "notify"]
    assert sorted(dag.task_ids) == sorted(order)
    for upstream, downstream in pairwise(order):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}


def test_every_task_retries_by_btc_core_policy(dag: DAG) -> None:
    for task in dag.tasks:
        assert task.retries == 3  # BTC_HTTP_RETRIES
        assert type(task.retry_policy).__name__ == "BtcRetryPolicy"
    decide = dag.get_task("extract").retry_policy.evaluate
    assert decide(ServerError("500"), 1, 4).retry_delay == timedelta(seconds=2)
    assert decide(ServerError("500"), 3, 4).retry_delay == timedelta(seconds=8)
    assert decide(BadPayload("drift"), 1, 4).action == RetryAction.FAIL
