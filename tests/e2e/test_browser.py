"""The three UIs in headless Chromium, as a person would look at them after one run each.

Prefect: a real server and process worker run ``btc-hourly`` to Completed; the deployments page
leads to the run and its artifacts. Dagster: the webserver on an instance where ``btc_price`` and
``daily_avg`` were materialized shows their lineage. Airflow: after a ``dag.test()`` run, the
api-server (Simple auth manager, generated password) shows the DAG with its tasks.

The screenshots in docs/img/ (README, docs/COMPARISON.md) are written by this test.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.schemas.objects import FlowRun
from selenium.webdriver.common.by import By

from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT
from btc_core.store import Store
from btc_core.transform import export
from deployments.deploy import setup_and_deploy
from deployments.processes import BIN
from flows.btc import CHART_KEY
from infra.ports import pick_port
from tests.e2e.browser import Browser, service
from tests.prefect.conftest import Server, _serve
from tests.prefect.helpers import run_deployment

pytestmark = pytest.mark.integration

AIRFLOW_DIR = PROJECT_ROOT / "airflow_port"
AIRFLOW_PY = AIRFLOW_DIR / ".venv" / "bin" / "python"
ARTIFACT_KEYS = ("btc-run-summary", "btc-daily-averages", CHART_KEY)  # BTC_ARTIFACTS=full
AIRFLOW_TASKS = ("extract", "load", "notify")


def _env(**extra: str) -> dict[str, str]:
    """This environment without BTC_* settings of the shell, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("BTC_")}, **extra}


def _run_ok(cmd: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT) -> None:
    """Run a command to completion; fail with the end of its output."""
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}"


# --- Prefect ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, FlowRun, dict]]:
    """A server (SQLite) set up and deployed, a process worker, one Completed btc-hourly run,
    and the newest day of the output contract that run wrote."""
    tmp = tmp_path_factory.mktemp("prefect-ui")
    gen = _serve(tmp)
    server = next(gen)
    try:
        setup_and_deploy(server.home, server.api_url)
        db = tmp / "btc.duckdb"
        server.worker(poll_s=1.0, BTC_DB_PATH=str(db), BTC_NOTIFY="none", BTC_ARTIFACTS="full")
        with server.client() as client:
            run = run_deployment(client, "btc-pipeline/btc-hourly")
        assert run.state is not None and run.state.is_completed(), f"{run.name}: {run.state}"
        yield server, run, json.loads(export(Store(db)))[-1]
    finally:
        gen.close()  # workers (SIGINT twice), then the server


def test_prefect_ui_shows_btc_hourly_a_completed_run_and_its_artifacts(
    browser: Browser, prefect_run: tuple[Server, FlowRun, dict]
) -> None:
    server, run, newest = prefect_run
    ui = server.api_url.removesuffix("/api")

    browser.open(f"{ui}/deployments", "btc-hourly", "btc-interval", "btc-backfill")
    browser.click("btc-hourly")
    browser.wait_for("btc-pipeline", "btc-process", "Every hour every day", run.name)
    browser.screenshot("prefect-deployment")

    browser.click(run.name)
    browser.wait_for("Completed", "Artifacts", "replay: 2208 observations kept")
    assert f"/runs/flow-run/{run.id}" in browser.driver.current_url
    browser.wait_drawn_green(".flow-run-graph canvas", "the run graph's Completed task runs")
    browser.screenshot("prefect-run")

    browser.click("Artifacts")
    browser.wait_for("TABLE", "MARKDOWN", *ARTIFACT_KEYS)
    browser.screenshot("prefect-artifacts")

    # The table holds what the run computed: the newest day of the export, to the cent.
    browser.click("btc-daily-averages")
    browser.wait_for("day", "avg_price_usd", "n_obs", newest["day"], str(newest["avg_price_usd"]))
    browser.screenshot("prefect-daily-averages")

    # The 90-day chart: a PNG inside the markdown artifact, drawn by the browser.
    browser.open(f"{ui}/runs/flow-run/{run.id}", "Artifacts")
    browser.click("Artifacts")
    browser.click(CHART_KEY)
    browser.wait_image("data:image/png;base64,", "the 90-day chart in the artifact")
    browser.screenshot("prefect-chart")


# --- Dagster ----------------------------------------------------------------------------------

DAGSTER_LOCATION = "dagster_port.definitions"


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """dagster-webserver on an instance (DAGSTER_HOME) where btc_price and daily_avg were
    materialized once; no daemon, so no schedule or sensor runs behind the test's back."""
    home = tmp_path_factory.mktemp("dagster-home")
    # No telemetry, and no "join the community" dialog over the page.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    env = _env(DAGSTER_HOME=str(home), BTC_DB_PATH=str(home / "btc.duckdb"), BTC_NOTIFY="none")
    _run_ok(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            DAGSTER_LOCATION,
            "--select",
            "btc_price,daily_avg",
        ],
        env,
    )
    port = str(pick_port(3300))
    url = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "dagster-webserver"), "-m", DAGSTER_LOCATION, "-h", "127.0.0.1", "-p", port]
    with service(cmd, env, home / "webserver.log", f"{url}/server_info"):
        yield url


def test_dagster_ui_shows_the_lineage_btc_price_to_daily_avg(
    browser: Browser, dagster_ui: str
) -> None:
    lineage = f"{dagster_ui}/locations/{DAGSTER_LOCATION}/asset-groups/btc/lineage"
    browser.open(lineage, "btc_price", "daily_avg", "Materialized")
    browser.wait_until(
        lambda text: text.count("Materialized") >= 2, "both assets shown as Materialized"
    )
    upstream, downstream = browser.element("btc_price"), browser.element("daily_avg")
    # The graph is laid out left to right: the upstream asset is to the left of its child.
    assert upstream.rect["x"] + upstream.rect["width"] < downstream.rect["x"], (
        f"btc_price at {upstream.rect} is not left of daily_avg at {downstream.rect}"
    )
    browser.screenshot("dagster-lineage")


# --- Airflow ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """The api-server of a fresh AIRFLOW_HOME whose metadata DB holds one successful
    ``dag.test()`` run of btc_price (that run also serializes the DAG: no dag-processor is
    needed to show it, and no scheduler runs anything else). Yields the URL, user, password."""
    if not AIRFLOW_PY.exists():
        pytest.skip(
            f"no Airflow environment at {AIRFLOW_PY}: python3 -m uv sync --project airflow_port"
        )
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in _env().items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    _run_ok(
        [
            str(AIRFLOW_PY),
            "-m",
            "btc_airflow.parity",
            "run",
            "--home",
            str(home),
            "--replay-file",
            str(DEFAULT_REPLAY_FILE),
            "--db",
            str(home / "btc.duckdb"),
            "--out",
            str(home / "export.json"),
        ],
        env,
        cwd=AIRFLOW_DIR,
    )
    port = str(pick_port(8380))
    url = f"http://127.0.0.1:{port}"
    cmd = [str(AIRFLOW_PY), "-m", "btc_airflow.env", "--home", str(home), "--port", port]
    with service(
        [*cmd, "airflow", "api-server"],
        env,
        home / "api-server.log",
        f"{url}/api/v2/monitor/health",
        cwd=AIRFLOW_DIR,
    ):
        # The Simple auth manager writes a generated password per user at start-up.
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        user, password = next(iter(passwords.items()))
        yield url, user, password


def test_airflow_ui_shows_the_dag_its_tasks_and_a_successful_run(
    browser: Browser, airflow_ui: tuple[str, str, str]
) -> None:
    url, user, password = airflow_ui
    browser.open(f"{url}/dags/btc_price", "Sign into Airflow")
    browser.driver.find_element(By.NAME, "username").send_keys(user)
    browser.driver.find_element(By.NAME, "password").send_keys(password)
    browser.click("Sign in")

    browser.wait_for("btc_price", "Latest Run", "0 * * * *", *AIRFLOW_TASKS)
    assert browser.driver.current_url.startswith(f"{url}/dags/btc_price"), "not on the DAG page"
    browser.screenshot("airflow-dag")

    browser.click("Runs")
    browser.wait_for("1 Dag Run", "Success", "manual__")
