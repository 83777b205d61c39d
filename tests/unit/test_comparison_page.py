"""docs/COMPARISON.md rendered from a small fixed set of measurements: no benchmark runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from scripts.comparison.__main__ import main
from scripts.comparison.loc import python_code_lines
from scripts.comparison.page import PageError, render
from scripts.comparison.project import airflow_tasks

MEASURED = Path(__file__).parent / "data" / "comparison-measurements.json"


@pytest.fixture
def measured() -> dict:
    return json.loads(MEASURED.read_text())


def prose(page: str) -> str:
    """The page with its line breaks folded, to find sentences that wrap."""
    return " ".join(page.split())


def test_prefect_numbers_land_in_their_tables(measured: dict) -> None:
    page = render(measured)
    assert "| warm run, one cycle (median) | 98 ms | +213 ms | +122 ms | +538 ms |" in page
    assert "| Prefect, `btc_pipeline()` (SQLite server) | 98 ms | 311 ms | +213 ms | 3.2x |" in page
    assert "| Airflow, `dag.test()` | 96 ms | 634 ms | +538 ms | 6.6x |" in page
    floor = (
        "| `btc_pipeline()` | 311 ms | +213 ms over plain, +72 ms over the floor (1.5x the floor) |"
    )
    assert floor in page
    assert "| the floor: empty async flow, same tasks | 141 ms | |" in page
    assert "| the floor as a sync flow | 1,087 ms | +946 ms over the async floor |" in page
    assert "| worker picks the run up | Scheduled -> Pending | 1.00 s | 1.00 s |" in page
    assert "| the run itself | Running -> Completed | 0.30 s | 0.10 s |" in page
    assert (
        "| API call: `btc_refresh.delay()` -> refresh Completed | 0.44 s | 0.41, 0.43, 0.47, 0.45, 0.44 "
        "| goal <= 1 s: **met** |"
    ) in page
    assert "| `prefect.client.orchestration` | 333 ms |" in page
    assert "| SQLite | `btc_pipeline`, warm | 333 ms | runs (ms): 333, 1,330 | 1 |" in page
    assert "heartbeat off" not in page  # the async flow's floor replaced that row


def test_prefect_numbers_land_in_their_sentences(measured: dict) -> None:
    text = prose(render(measured))
    assert (
        "Prefect's async flow costs +213 ms (Prefect's floor, an empty flow with the same tasks: 141 ms)"
        in text
    )
    assert "Dagster is the cheapest here, Airflow the dearest" in text
    assert "takes 3.0 s from trigger to Completed" in text
    assert "answers an API call in 0.4 s and an event in 0.6 s" in text
    assert "the pipeline's overhead, +213 ms (goal <= 250 ms: **met**)" in text
    assert "below Dagster's +122 ms in this run: **missed**" in text
    assert "The sync floor costs +946 ms more than the async one" in text
    assert "2,345 ms against 700 ms, a ratio of 3.35x (goal <= 3x: **missed**)" in text
    assert "nothing to Prefect's empty one but that work is 3.57x" in text
    assert "A process worker polling every 2 s (the project's default" in text
    assert "Prefect's own is 10 s" in text
    assert "**3.0 s** (goal <= 2.5 s: **missed**); the empty flow 2.6 s; runs (s): 3.1, 2.9" in text
    assert "saw the Completed state 0.50 s later" in text
    assert "Requests answered 503 because the database was busy: SQLite 5, PostgreSQL 0;" in text
    assert "Per-run overhead: +213 ms warm, 1.7x Dagster's" in text
    assert "the btc_price DAG, its 3 tasks (extract -> load -> notify)" in text
    assert "(`btc-interval`, every 15 min)" in text
    assert "expiring after 5 min" in text


def test_the_words_follow_the_numbers(measured: dict) -> None:
    """Prefect below Dagster warm, a failed round, a busy PostgreSQL: the prose changes."""
    faster = copy.deepcopy(measured)
    faster["prefect_cost"]["warm_ms"]["prefect"] = 150.0  # +52 ms over plain
    faster["cold"]["identical"][1] = False
    faster["backends"]["postgres"]["many_tasks"]["retried_requests"] = 9
    text = prose(render(faster))
    assert "Prefect is the cheapest here, Airflow the dearest" in text
    assert "below Dagster's +122 ms in this run: **met**" in text
    assert "Not on the warm run any more (+52 ms against Dagster's +122 ms)" in text
    assert "Per-run overhead" not in text
    assert "were NOT byte-identical in every measured round" in text
    assert "SQLite 5, PostgreSQL 9. `btc_pipeline` warm" in text


def test_a_missing_measurement_is_one_clear_line(measured: dict) -> None:
    older = copy.deepcopy(measured)
    del older["prefect_cost"]["trigger"]  # read while naming the values
    with pytest.raises(PageError, match=r"^the measurements do not fit this page \(no 'trigger'\)"):
        render(older)
    del measured["project"]["airflow_tasks"]  # read by the template itself
    with pytest.raises(PageError, match=r"\(.*'airflow_tasks'\): measure again"):
        render(measured)


def test_a_missing_screenshot_is_named(measured: dict, tmp_path: Path) -> None:
    with pytest.raises(PageError, match=r"^docs/img/prefect-deployment\.png is missing"):
        render(measured, images=tmp_path)


def test_from_json_of_an_older_generator_fails_and_writes_nothing(
    measured: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    del measured["prefect_cost"]
    saved, out = tmp_path / "old.json", tmp_path / "COMPARISON.md"
    saved.write_text(json.dumps(measured))
    assert main(["--from-json", str(saved), "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        "comparison: the measurements do not fit this page (no 'prefect_cost'): "
        "measure again (no --from-json)\n"
    )
    assert not out.exists()


def test_from_json_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "COMPARISON.md"
    assert main(["--from-json", str(MEASURED), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Prefect, Dagster and Airflow on one pipeline")


def test_airflow_tasks_are_read_from_the_dag_file() -> None:
    assert airflow_tasks() == ["extract", "load", "notify"]


def test_code_lines_leave_out_docstrings_comments_and_blanks() -> None:
    source = '"""Module."""\n\n# a comment\ndef f() -> int:\n    """Doc."""\n    return 1\n'
    assert python_code_lines(source) == {4, 6}
