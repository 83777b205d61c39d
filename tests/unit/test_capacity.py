"""The capacity benchmark's arithmetic (bench/capacity_stats.py), on made-up runs and counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.capacity_page import summary_row
from bench.capacity_stats import (
    Run,
    bottleneck,
    cpu_limit,
    cpu_per_run,
    fraction,
    late_s,
    refusal,
    runs_per_minute,
    saturated,
    slope_per_100,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(created_s: float, duration_s: float = 3.0, late: float = 0.5, state: str = "Completed"):
    """A run triggered at T0 + ``created_s``, started ``late`` s after, ended ``duration_s`` after
    its trigger (no end unless Completed)."""
    created = T0 + timedelta(seconds=created_s)
    ended = created + timedelta(seconds=duration_s) if state == "Completed" else None
    return Run(state, created, created, created + timedelta(seconds=late), ended)


def test_cpu_limit_is_cores_times_60_over_the_cpu_seconds_of_one_run():
    assert cpu_limit(2, 4.0) == 30.0
    assert cpu_limit(8, 0.5) == 960.0
    with pytest.raises(ValueError):
        cpu_limit(2, 0.0)


def test_fraction_of_the_limit():
    assert fraction(7.5, 30.0) == 0.25
    assert fraction(1.0, 0.0) == 0.0


def test_runs_per_minute_over_the_window_when_the_setup_keeps_up():
    runs = [run(10.0 * i) for i in range(6)]  # 6/min for 60 s, each done 3 s after its trigger
    assert runs_per_minute(runs, window_s=60) == 6.0


def test_runs_per_minute_over_first_trigger_to_last_completed_when_it_falls_behind():
    runs = [run(10.0 * i, duration_s=70.0) for i in range(6)]  # the last ends at 120 s
    assert runs_per_minute(runs, window_s=60) == 3.0


def test_only_completed_runs_count():
    runs = [run(0), run(10), run(20, state="Failed")]
    assert runs_per_minute(runs, window_s=60) == 2.0
    assert runs_per_minute([run(0, state="Crashed")], window_s=60) == 0.0


def test_a_batch_with_a_run_that_did_not_complete_is_refused():
    assert refusal([run(0), run(10)]) is None
    reason = refusal([run(0), run(10, state="Crashed"), run(20, state="Late")])
    assert reason is not None and "2 of 3 runs did not Complete (Crashed, Late)" in reason
    assert refusal([]) == "no run was started"


def test_a_batch_with_a_run_late_by_more_than_60_s_is_refused():
    assert late_s(run(0, late=61.0)) == 61.0
    assert refusal([run(0, late=59.0)]) is None
    reason = refusal([run(0, late=59.0), run(10, late=61.0, duration_s=65.0)])
    assert reason is not None and "1 runs started Late by more than 60 s" in reason


def test_a_run_never_started_has_no_lateness():
    assert late_s(Run("Scheduled", T0, T0, None, None)) is None


def test_cpu_per_run_and_the_bottleneck():
    before = {"server": 10.0, "worker 1": 2.0, "worker 1 flow runs": 0.0}
    after = {"server": 20.0, "worker 1": 4.0, "worker 1 flow runs": 30.0}
    per_run = cpu_per_run(before, after, runs=10)
    assert per_run == {"server": 1.0, "worker 1": 0.2, "worker 1 flow runs": 3.0}
    part, share = bottleneck(per_run)
    assert part == "worker 1 flow runs"
    assert share == pytest.approx(3.0 / 4.2)
    with pytest.raises(ValueError):
        cpu_per_run(before, after, runs=0)


def test_slope_of_rss_in_mib_per_100_runs():
    runs = [0, 50, 100, 150, 200]
    assert slope_per_100(runs, [220, 227.5, 235, 242.5, 250]) == pytest.approx(15.0)
    assert slope_per_100(runs, [220.0] * 5) == 0.0
    assert slope_per_100([10, 10], [1.0, 2.0]) == 0.0


def test_saturated_below_85_percent_of_the_offered_rate():
    assert not saturated(10, 9)
    assert saturated(24, 7.6)


def test_the_page_reports_a_setup_whose_every_batch_was_refused_as_failed():
    from bench.capacity import Load, Result, Setup

    refused = Load(24, 12, 7.6, "10 runs started Late by more than 60 s", 68.0, 66.0, {}, 0.1, "")
    ok = Load(6, 6, 6.0, None, 5.0, 1.0, {"server": 1.0, "flow-run processes": 3.0}, 0.1, "")
    setup = Setup("a", "SQLite + 1 worker", "sqlite", 1)
    assert "**failed**: 10 runs started Late" in summary_row(Result(setup, [refused]), cores=2)
    row = summary_row(Result(setup, [ok, refused]), cores=2)
    # 2 cores x 60 / 4 CPU s = 30 runs/min; others kept 0.1 core busy: 28.5 on the 1.9 left
    assert row.startswith(
        "| SQLite + 1 worker | 6.0 (24/min refused) | 4.00 | 30.0 | 20% | 28.5 (21%) | flow-run"
    )


def test_hot_functions_of_a_py_spy_raw_profile(tmp_path):
    from bench.capacity import hot_functions

    raw = tmp_path / "profile.txt"
    raw.write_text(
        'process 1:"prefect worker";process 2:"python -m prefect.engine";<module> (a.py:1);'
        "_find_and_load (<frozen importlib._bootstrap>:1176);_compile_bytecode (<frozen x>:7) 6\n"
        'process 1:"prefect worker";run (b.py:3);select (selectors.py:468) 3\n'
        'process 1:"prefect worker";run (b.py:3);select (selectors.py:470) 1\n'
        'process 3:"python -m prefect.engine" 5\n'  # no Python frame: not counted
    )
    summary = hot_functions(raw, top=2)
    assert summary == (
        "importing modules 60% of the samples; on top: "
        "`_compile_bytecode (<frozen x>)` 60%; `select (selectors.py)` 40%"
    )
    assert hot_functions(tmp_path / "missing.txt") == ""


def test_results_saved_and_loaded_again_for_render(tmp_path):
    import json

    from bench.capacity import SETUPS, Load, Result, load, save

    ok = Load(6, 3, 6.0, None, 5.0, 1.0, {"server": 1.0}, 0.5, "")
    results = [Result(SETUPS["b"], [ok], [(0, {"server": 300.0}), (3, {"server": 301.0})])]
    meta = {"started": "2026-12-07T16:00:00+00:00", "cores": 2}
    save(tmp_path / "r.json", results, meta)
    assert load(tmp_path / "r.json") == (results, meta)
    older = json.loads((tmp_path / "r.json").read_text())
    del older["results"][0]["setup"]["worker_venv"]  # saved before workers had their own venv
    (tmp_path / "r.json").write_text(json.dumps(older))
    assert load(tmp_path / "r.json")[0][0].setup.worker_venv is False
