"""The numbers the page states about this project's setup, read from where they are set."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import yaml

from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT, Settings

AIRFLOW_DAG = PROJECT_ROOT / "airflow_port" / "dags" / "btc.py"
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def is_task_decorator(decorator: ast.expr) -> bool:
    """``@task``, ``@task(...)`` or ``@task.something(...)``."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        target = target.value
    return isinstance(target, ast.Name) and target.id == "task"


def airflow_tasks(dag_file: Path = AIRFLOW_DAG) -> list[str]:
    """The functions the Airflow DAG file declares as TaskFlow tasks, in file order (read as
    text: Airflow lives in its own environment)."""
    tree = ast.parse(dag_file.read_text())
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and any(map(is_task_decorator, node.decorator_list))
    ]
    return [node.name for node in sorted(found, key=lambda node: node.lineno)]


def prefect_interval_s(deployment: str = "btc-interval") -> float:
    """The interval of ``deployment``'s schedule in prefect.yaml."""
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    found = next(entry for entry in spec["deployments"] if entry["name"] == deployment)
    return float(found["schedules"][0]["interval"])


def project_facts() -> dict[str, object]:
    """Replay rows, the core's retry and cache defaults, Prefect's default worker polling, the
    interval deployment, Dagster's sensor interval and the Airflow DAG's tasks."""
    from prefect.settings.models.worker import WorkerSettings

    with warnings.catch_warnings():  # Dagster's beta warnings on import, not ours to fix
        warnings.simplefilter("ignore")
        from dagster_port.automation import replay_file_sensor

    defaults = Settings.from_env(env={})
    with DEFAULT_REPLAY_FILE.open() as replay:
        rows = sum(1 for _ in replay) - 1  # the header
    return {
        "replay_rows": rows,
        "http_retries": defaults.http_retries,
        "retry_base_s": defaults.retry_base_s,
        "extract_cache_s": defaults.extract_cache_s,
        "prefect_default_poll_s": WorkerSettings.model_fields["query_seconds"].default,
        "prefect_interval_s": prefect_interval_s(),
        "dagster_sensor_s": replay_file_sensor.minimum_interval_seconds,
        "airflow_tasks": airflow_tasks(),
    }
