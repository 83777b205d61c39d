"""Acceptance: plain, Prefect, Dagster and Airflow give byte-identical output on the same input."""

import json

import pytest

from btc_core.settings import Settings
from btc_core.sources import Replay
from scripts.parity import main as parity
from scripts.parity_live import main as parity_live
from tests.csvs import messy

pytestmark = pytest.mark.integration


def test_all_paths_agree_on_the_whole_shared_file(shared_csv, tmp_path, capsys):
    assert parity([str(shared_csv), "--out", str(tmp_path / "shared")]) == 0
    assert json.loads((tmp_path / "shared" / "airflow.json").read_text())[0]["day"] == "2019-11-20"
    assert "byte-identical" in capsys.readouterr().out


def test_all_paths_reject_the_same_rows_of_a_messy_file(shared_csv, tmp_path):
    path = messy(shared_csv, tmp_path / "messy.csv")
    batch = Replay(Settings.from_env(env={}), path).fetch()
    assert batch.duplicates > 0 and len(batch.rejected) >= 7
    assert parity([str(path), "--out", str(tmp_path / "messy")]) == 0


def test_all_paths_retry_and_fail_over_alike_against_the_fake_api(tmp_path, capsys):
    """make parity-live: each fault scenario gives every path the same export, the same
    requests per provider and the same recorded failover note."""
    out = tmp_path / "live"
    assert parity_live(["--out", str(out)]) == 0, capsys.readouterr().out
    result = json.loads((out / "airflow.json").read_text())
    assert {name: r["requests"] for name, r in result.items()} == {
        "flaky": {"coingecko": 3, "coinbase": 0},
        "rate-limited": {"coingecko": 2, "coinbase": 0},
        "down": {"coingecko": 4, "coinbase": 1},
        "malformed": {"coingecko": 1, "coinbase": 1},
    }
    notes = {name: r["loads"][-1]["notes"] for name, r in result.items()}
    assert notes["flaky"] == notes["rate-limited"] == []
    assert notes["down"] == ["failover from coingecko GET /simple/price: HTTP 503 server error"]
    assert notes["malformed"][0].startswith("failover from coingecko GET /simple/price: answer is")
