"""The Prometheus configuration and alert rules, checked and unit-tested by promtool; the run
counts the exporter reads, parsed back from btc_core's own table."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import numpy as np
import pytest

from btc_core.observations import Batch
from btc_core.report import run_counts, run_summary_markdown
from btc_core.settings import PROJECT_ROOT
from btc_core.store import LoadResult
from deployments.metrics import run_counts as read_counts

PROMETHEUS = PROJECT_ROOT / "infra" / "prometheus"


def promtool(*args: str) -> str:
    result = subprocess.run(
        ["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.mark.usefixtures("ops_tools")
def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", "btc-alerts.yml")
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("test", "rules", "btc-alerts.test.yml")


def test_metrics_read_the_run_counts_table_and_never_the_summary():
    ts, price = np.array([datetime(2023, 12, 31, 23)], dtype="datetime64[us]"), np.array([42265.16])
    batch = Batch("replay", ts, price, received=2208, rejected={"not a number": 315, "<= 0": 2})
    result = LoadResult("replay", 5, 2, 1884, batch.first_day, batch.last_day)
    table = json.dumps([run_counts(batch, result)])  # as Prefect stores a table artifact
    assert read_counts(table) == {"received": 2208, "rejected": 317, "loaded": 7}
    assert read_counts(run_summary_markdown(batch, result, None, prices=False)) is None
