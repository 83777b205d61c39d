"""The Prometheus configuration and alert rules, checked and unit-tested by promtool; the run
summary the exporter reads, parsed back from btc_core's own renderer."""

from __future__ import annotations

import subprocess
from datetime import datetime

import pandas as pd
import pytest

from btc_core.observations import Batch
from btc_core.report import run_summary_markdown
from btc_core.settings import PROJECT_ROOT
from btc_core.store import LoadResult
from deployments.metrics import summary_counts

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


def test_metrics_read_the_run_summary_counts_and_nothing_else():
    frame = pd.DataFrame({"ts": [datetime(2023, 12, 31, 23)], "price_usd": [42265.16]})
    batch = Batch("replay", frame, received=2208, rejected={"not a number": 315, "<= 0": 2})
    result = LoadResult("replay", 5, 2, 1884, frame["ts"][0].date(), frame["ts"][0].date())
    for prices in (True, False):
        markdown = run_summary_markdown(batch, result, None, prices=prices)
        assert summary_counts(markdown) == {"received": 2208, "rejected": 317, "loaded": 7}
    assert summary_counts("# something else\n| rows received | n/a |\n") == {}
