"""Acceptance: plain, Prefect, Dagster and Airflow give byte-identical output on the same input."""

import json

import pytest

from btc_core.settings import Settings
from btc_core.sources import Replay
from scripts.parity import main as parity
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
