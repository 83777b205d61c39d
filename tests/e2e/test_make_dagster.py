"""``make dagster`` on a first run, as a new user meets it: a fresh DAGSTER_HOME gets the
project's dagster.yaml, so the console shows neither the missing-instance warning nor the
telemetry banner, and the URL it prints opens on the asset graph, not on a dialog."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from btc_core.settings import PROJECT_ROOT
from infra.ports import pick_port
from tests.e2e.browser import Browser, service

pytestmark = pytest.mark.integration


def test_first_run_of_make_dagster_opens_on_the_asset_graph(browser: Browser, tmp_path: Path):
    home, log, port = tmp_path / "dagster-home", tmp_path / "make-dagster.log", pick_port(4650)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BTC_", "DAGSTER_"))}
    command = ["make", "dagster", f"DAGSTER_HOME={home}", f"DAGSTER_PORT={port}"]
    with service(command, env, log, f"http://127.0.0.1:{port}/server_info"):
        printed = [line for line in log.read_text().splitlines() if line.startswith("asset graph:")]
        assert printed, "make dagster did not print the URL of the asset graph"
        browser.open(printed[0].split(": ", 1)[1], "btc_price", "daily_avg", "Materialize all")
        assert "Join the Dagster community" not in browser.page_text()
        upstream, downstream = browser.element("btc_price"), browser.element("daily_avg")
        assert upstream.rect["x"] + upstream.rect["width"] < downstream.rect["x"]
    console = log.read_text()
    assert "No dagster instance configuration file" not in console
    assert "we collect usage statistics" not in console
    assert (home / "dagster.yaml").read_text() == (
        PROJECT_ROOT / "dagster_port" / "dagster.yaml"
    ).read_text()
