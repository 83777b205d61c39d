"""Strict hybrid: no value quoted by an error reaches the control plane (issue 31, rows 3 and 4).

Each case plants distinctive values where an error can quote them (an HTTP answer's content
type, body and Retry-After header, a replay value DuckDB cannot store, a settings validation
detail), runs the flow in this process against the real server, then scans the server's SQLite
database (states, events, logs, artifacts, task runs) byte for byte for each planted value. The
full messages must still reach the worker's own log (``btc_worker.errors``).
"""

from __future__ import annotations

import asyncio
import copyreg
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogHandler, APILogWorker
from prefect.states import State
from tblib import pickling_support

from btc_core import pipeline
from btc_core.errors import ConfigError, RateLimited, is_retryable
from btc_core.fake_api import serving
from btc_core.settings import Settings
from flows.boundary import redacted
from flows.btc import btc_pipeline
from tests.e2e.boundary import sqlite_text
from tests.prefect.helpers import all_task_runs

pytestmark = pytest.mark.integration


@dataclass
class Answer:
    """What the stub API answers every request with."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def stub_api() -> Iterator[tuple[str, Answer]]:
    """An HTTP server answering every GET with one :class:`Answer` (set by the test)."""
    answer = Answer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "stub-api") as url:
        yield url, answer


@pytest.fixture
def strict(against, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """Strict hybrid settings (worker side) with quick retries; the worker's error log captured."""
    for name, value in {
        "BTC_ARTIFACTS": "summary",
        "BTC_SECRETS_FROM": "env",
        "BTC_FAILOVER_SOURCE": "none",
        "BTC_HTTP_RETRIES": "1",
        "BTC_RETRY_BASE_S": "0.05",
        "BTC_RETRY_MAX_WAIT_S": "0.05",
        "BTC_READ_TIMEOUT_S": "2",
    }.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.ERROR, logger="btc_worker.errors")
    # What PREFECT_LOGGING_EXTRA_LOGGERS=btc_core does on a worker (deployments/processes.py):
    # the core's log lines (a retry, a failover, with the error) go to the API too.
    core = logging.getLogger("btc_core")
    api = [
        h for h in logging.getLogger("prefect.flow_runs").handlers if isinstance(h, APILogHandler)
    ]
    monkeypatch.setattr(core, "handlers", [*core.handlers, *api])
    return against


def replay_with(tmp_path: Path, replay_csv: Path, close: str) -> Path:
    """The shipped replay file's last day, its last close replaced by ``close``."""
    lines = replay_csv.read_text().splitlines()
    cells = lines[-1].split(",")
    cells[5] = close
    path = tmp_path / "planted.csv"
    path.write_text("\n".join([lines[0], *lines[-24:-1], ",".join(cells)]) + "\n")
    return path


def run_and_settle(server) -> State:
    """One pipeline run in this process; returns after its logs, events and task runs are on
    the server (task runs arrive as events, written a moment later)."""
    state = asyncio.run(btc_pipeline(return_state=True))
    APILogWorker.drain_all()
    EventsWorker.drain_all()
    deadline = time.monotonic() + 30
    with server.client() as client:
        while time.monotonic() < deadline:
            runs = all_task_runs(client, state.state_details.flow_run_id)
            if runs and all(r.state and r.state.is_final() for r in runs):
                break
            time.sleep(0.2)
    time.sleep(1.0)  # the last state events of those runs
    return state


# label -> (planted values, set-up of the case: (monkeypatch, tmp_path, replay_csv, stub) -> None).
# Each value can be nowhere else in the database: no hex (UUIDs hold "1e15"), no digit.digits
# that a timestamp's seconds hold ("17.313370" holds "7.31337"): both were false hits once the
# shared server held a few hundred runs. And as the worker's log writes it (Retry-After: %g).
Setup = Callable[[pytest.MonkeyPatch, Path, Path, tuple[str, Answer]], None]


def _not_json(mp: pytest.MonkeyPatch, tmp: Path, csv: Path, stub: tuple[str, Answer]) -> None:
    url, answer = stub
    answer.headers = {"Content-Type": "text/12345.6789"}
    answer.body = b"BODY 31337.4242 ok?"  # 19 bytes, as in the issue
    mp.setenv("BTC_SOURCE", "coingecko")
    mp.setenv("BTC_COINGECKO_URL", url)
    mp.setenv("BTC_FAILOVER_SOURCE", "coinbase")  # its log line quotes the first error
    mp.setenv("BTC_COINBASE_URL", url)


def _retry_after(mp: pytest.MonkeyPatch, tmp: Path, csv: Path, stub: tuple[str, Answer]) -> None:
    url, answer = stub
    answer.status, answer.headers = 429, {"Retry-After": "4242.31"}
    mp.setenv("BTC_SOURCE", "coinbase")
    mp.setenv("BTC_COINBASE_URL", url)


def _decimal_overflow(mp: pytest.MonkeyPatch, tmp: Path, csv: Path, _: object) -> None:
    mp.setenv("BTC_MAX_PRICE_USD", "1.5e15")
    mp.setenv("BTC_REPLAY_FILE", str(replay_with(tmp, csv, "12345678901.2345")))


def _validation(mp: pytest.MonkeyPatch, tmp: Path, csv: Path, _: object) -> None:
    mp.setenv("BTC_CONNECT_TIMEOUT_S", "31337.5151x")


CASES: dict[str, tuple[list[str], Setup]] = {
    "row 3: a non-JSON answer's content type and body": (["12345.6789", "31337.4242"], _not_json),
    "a 429's Retry-After header": (["4242.31"], _retry_after),
    "row 4: a close DuckDB cannot cast to DECIMAL(18,8), BTC_MAX_PRICE_USD=1.5e15": (
        ["12345678901.2345", "12345678901.234501", "1.5e15"],
        _decimal_overflow,
    ),
    "a settings validation detail": (["31337.5151x"], _validation),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_planted_value_reaches_the_control_plane(
    case, strict, monkeypatch, tmp_path, replay_csv, stub_api, caplog
):
    planted, setup = CASES[case]
    setup(monkeypatch, tmp_path, replay_csv, stub_api)
    state = run_and_settle(strict)
    assert state.is_failed(), state
    stored = sqlite_text(strict.home)
    hits = {value: stored.count(value) for value in planted if value in stored}
    assert hits == {}, f"planted values on the control plane (hits): {hits}"
    assert "on the worker's log" in (state.message or "")  # the class and a code: redacted
    worker_side = caplog.text
    assert any(value in worker_side for value in planted), "the details left the worker's log"


def test_retries_still_see_the_real_error(strict, monkeypatch, tmp_path, replay_csv, stub_api):
    """A 429 is retried as before: Prefect runs extract twice (BTC_HTTP_RETRIES=1)."""
    _retry_after(monkeypatch, tmp_path, replay_csv, stub_api)
    state = run_and_settle(strict)
    with strict.client() as client:
        (extract,) = [
            r
            for r in all_task_runs(client, state.state_details.flow_run_id)
            if r.name.startswith("extract")
        ]
    assert extract.run_count == 2


@pytest.mark.parametrize("reducer", ["python's", "tblib's"])
def test_a_redacted_error_keeps_its_class_and_retry_after(reducer, monkeypatch) -> None:
    """And the original stays unredacted for the worker's log. In CI the 429 case leaked once
    the Dask backfill test had run in the same process: Dask installs tblib's reducer for every
    exception class, copy.copy then shared the original's __dict__, and marking the copy
    redacted marked the original, which Prefect then received as it was."""
    if reducer == "tblib's":
        monkeypatch.setitem(copyreg.dispatch_table, RateLimited, pickling_support.pickle_exception)
    original = RateLimited("coingecko: HTTP 429, retry after 7.31337 s", 7.31337)
    safe = redacted(original)
    assert isinstance(safe, RateLimited) and is_retryable(safe)
    assert safe.retry_after == 7.31337 and "7.31337" not in str(safe)
    assert not getattr(original, "redacted", False) and "7.31337" in str(original)


def test_the_price_bound_fits_the_store(replay_csv: Path, tmp_path: Path) -> None:
    """Row 4's first fix: a bound DECIMAL(18,8) cannot hold is refused, and under the highest
    accepted one the planted close is a rejected row, the rest of the file loaded."""
    with pytest.raises(ConfigError, match="BTC_MAX_PRICE_USD"):
        Settings.from_env({"BTC_MAX_PRICE_USD": "1e10"})
    settings = Settings.from_env(
        {"BTC_MAX_PRICE_USD": "9999999999"},
        replay_file=replay_with(tmp_path, replay_csv, "12345678901.2345"),
        db_path=tmp_path / "btc.duckdb",
        notify="none",
    )
    result = pipeline.load(settings, pipeline.extract(settings))
    assert result.inserted == 23
