"""The DAG file imports cleanly and declares the schedule and retry policy of the issue."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import DAG
from btc_airflow import env


def test_dagbag_imports_without_errors() -> None:
    bag = DagBag(dag_folder=env.DAGS_FOLDER)
    assert bag.import_errors == {}
    assert bag.dag_ids == ["btc_price"]


def test_schedule_and_concurrency(dag: DAG) -> None:
    assert dag.schedule == "@hourly"
    assert dag.catchup is False
    assert dag.max_active_runs == 1  # DuckDB has one writer


def test_tasks_form_a_chain(dag: DAG) -> None:
    order = ["extract", "load", "transform", "notify"]
    assert sorted(dag.task_ids) == sorted(order)
    for upstream, downstream in pairwise(order):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}


def test_every_task_retries_with_exponential_backoff(dag: DAG) -> None:
    for task in dag.tasks:
        assert task.retries == 3
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay == timedelta(minutes=15)
