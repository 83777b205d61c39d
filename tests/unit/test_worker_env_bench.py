"""bench/worker_env.py's arithmetic and its refusal to count a run that did not complete (no
server, no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import worker_env


def test_importtime_rows_are_each_modules_own_milliseconds() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       139 |        139 |   _io\n"
        "import time:      1500 |     990000 | prefect\n"
        "some log line\n"
    )
    assert worker_env.importtime_rows(stderr) == {"_io": 0.139, "prefect": 1.5}


def test_spread_is_the_median_and_the_range() -> None:
    assert worker_env.spread([3.0, 1.0, 2.5]) == " 2.50 (1.00-3.00)"


@pytest.mark.parametrize("final", ["FAILED", "CRASHED", "CANCELLED"])
def test_a_run_that_did_not_complete_stops_the_benchmark(
    monkeypatch: pytest.MonkeyPatch, final: str
) -> None:
    def call(method: str, url: str, **kwargs: Any) -> Any:
        if url.endswith("/create_flow_run"):
            return {"id": "run-1"}
        if "/deployments/name/" in url:
            return {"id": "deployment-1"}
        return {"state": {"type": final}}

    monkeypatch.setattr(worker_env, "call", call)
    monkeypatch.setattr(worker_env, "flow_cpu_s", lambda pid: 0.0)
    with pytest.raises(RuntimeError, match=f"run-1 ended {final}: not counted"):
        worker_env.trigger_to_final("http://api", "btc-pipeline/btc-hourly", "own", 1)


def test_a_completed_run_is_timed_by_its_state_history(monkeypatch: pytest.MonkeyPatch) -> None:
    history = [
        {"name": "Scheduled", "timestamp": "2026-12-07T16:00:00+00:00"},
        {"name": "Pending", "timestamp": "2026-12-07T16:00:00.400000+00:00"},
        {"name": "Running", "timestamp": "2026-12-07T16:00:01.900000+00:00"},
        {"name": "Completed", "timestamp": "2026-12-07T16:00:02.300000+00:00"},
    ]

    def call(method: str, url: str, **kwargs: Any) -> Any:
        if url.endswith("/create_flow_run"):
            return {"id": "run-1"}
        if "/deployments/name/" in url:
            return {"id": "deployment-1"}
        if url.endswith("/flow_run_states/"):
            return history
        return {"state": {"type": "COMPLETED"}}

    cpu = iter([10.0, 11.25])
    monkeypatch.setattr(worker_env, "call", call)
    monkeypatch.setattr(worker_env, "flow_cpu_s", lambda pid: next(cpu))
    run = worker_env.trigger_to_final("http://api", "btc-pipeline/btc-hourly", "own", 1)
    assert run["cpu_s"] == 1.25
    assert (run["states"]["Completed"] - run["states"]["Scheduled"]).total_seconds() == 2.3
