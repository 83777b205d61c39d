"""The Airflow test environment: a project-local AIRFLOW_HOME, migrated once per session.

Shared fixtures (``settings``, ``replay_csv``, ``fake_api``, ...) come from the main project's
``tests/plugin.py`` (importable here through its editable install).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from btc_airflow import env

if TYPE_CHECKING:
    from airflow.sdk import DAG

pytest_plugins = ["tests.plugin"]

TEST_HOME = env.PORT_DIR / "var" / "test_airflow_home"


def pytest_configure(config: pytest.Config) -> None:
    """Set the environment before any test module imports Airflow (it reads it once)."""
    env.apply(TEST_HOME)
    # A test switch Airflow itself offers: retries wait ~1 s instead of 300 s.
    os.environ["AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY"] = "0"


@pytest.fixture(scope="session")
def dag() -> DAG:
    """The ``btc_price`` DAG as Airflow parses it, with the metadata DB migrated."""
    from btc_airflow.parity import load_dag, migrate_db

    migrate_db()
    return load_dag()
