"""Pytest plugin shared by every environment's test suite (``pytest_plugins = ["tests.plugin"]``;
the Airflow environment reaches this package through the project's editable install).

- The processes tests start begin with SIGINT at its default (:mod:`infra.signals`).
- With ``BTC_REQUIRE_ALL=1`` (set by ``.ci/run``) a skipped test counts as a failure: CI cannot
  pass by skipping what it was meant to prove.
- Figures a test measures (``figure("...")``) are printed together at the end of the run, so
  they reach the CI log (pytest shows a passing test's own output to nobody).
- Fixtures for the recorded data, isolated settings, the local fake price API and a local
  webhook (:class:`WebhookSink`, the one sink of every suite).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from btc_core.fake_api import FakeApi, serving
from btc_core.settings import DEFAULT_REPLAY_FILE, SHARED_CSV_NAME, Settings, shared_csv_path
from infra.signals import sigint_not_ignored


def pytest_configure(config: pytest.Config) -> None:
    """The servers and workers the tests start must stop on SIGTERM as under a service manager,
    also when the suite itself runs in a script's background (.ci/run may), where SIGINT is
    inherited ignored.

    The suite's deployments deliver code from the checkout's folder (``BTC_CODE_SOURCE=path``),
    so its workers run the working tree with a developer's uncommitted changes, not HEAD;
    the default (git_clone) is what tests/prefect/test_code_source.py, tests/hosts and the
    fresh-machine test deploy. A misspelt ``BTC_ALLOW_SKIPS`` fails here, not at a skip."""
    allowed_skips()
    sigint_not_ignored()
    os.environ.setdefault("BTC_CODE_SOURCE", "path")


# Skips a CI may still allow by name in BTC_ALLOW_SKIPS (GitHub's runners have no ../shared/data):
# the text each such skip's reason holds.
ALLOWABLE_SKIPS = {"shared-data": SHARED_CSV_NAME}


def require_all() -> bool:
    """True when skips must fail (CI)."""
    return os.environ.get("BTC_REQUIRE_ALL") == "1"


def allowed_skips() -> list[str]:
    """The reason texts of the skips ``BTC_ALLOW_SKIPS`` names; a name not known is an error."""
    names = os.environ.get("BTC_ALLOW_SKIPS", "").split()
    if unknown := [n for n in names if n not in ALLOWABLE_SKIPS]:
        raise pytest.UsageError(
            f"BTC_ALLOW_SKIPS: unknown {unknown}, known {list(ALLOWABLE_SKIPS)}"
        )
    return [ALLOWABLE_SKIPS[n] for n in names]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if require_all() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        if any(text in str(reason) for text in allowed_skips()):
            return
        report.outcome = "failed"
        report.longrepr = f"skipped, but BTC_REQUIRE_ALL=1 forbids skips: {reason}"


FIGURES: list[tuple[str, str]] = []  # (test id, figure), gathered on the controlling process


@pytest.fixture
def figure(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """Record one line of figures this test measured, for the run's closing summary (xdist
    carries user properties from its workers)."""
    return lambda text: record_property("figure", text)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        FIGURES.extend((report.nodeid, v) for k, v in report.user_properties if k == "figure")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("figures measured by the tests")
        for nodeid, text in FIGURES:
            terminalreporter.write_line(f"{nodeid.split('::')[-1]}: {text}")


@pytest.fixture(scope="session")
def shared_csv() -> Path:
    """36,061 real hourly candles (skips when the shared data set is absent)."""
    path = shared_csv_path()
    if path is None:
        pytest.skip(f"{SHARED_CSV_NAME} not found: set BTC_SHARED_DATA or place ../shared/data")
    return path


@pytest.fixture(scope="session")
def replay_csv() -> Path:
    """The 2,208-row slice shipped with the project."""
    return DEFAULT_REPLAY_FILE


@pytest.fixture
def settings(tmp_path: Path, replay_csv: Path) -> Settings:
    """Settings isolated in ``tmp_path``: replay source, quiet notifications, fast retries."""
    return Settings.from_env(
        env={},
        db_path=tmp_path / "btc.duckdb",
        replay_file=replay_csv,
        notify="none",
        notify_file=tmp_path / "notifications.jsonl",
        retry_max_wait_s=0.05,
        lock_timeout_s=5.0,
        read_timeout_s=1.0,
        connect_timeout_s=1.0,
    )


@pytest.fixture(scope="session")
def fake_api_server(replay_csv: Path) -> Iterator[FakeApi]:
    with FakeApi.start(replay_csv, slow_s=2.0) as api:
        yield api


@pytest.fixture
def fake_api(fake_api_server: FakeApi) -> Iterator[FakeApi]:
    """The local fake CoinGecko/Coinbase, with no faults queued."""
    fake_api_server.reset()
    yield fake_api_server
    fake_api_server.reset()


@pytest.fixture
def live_settings(settings: Settings, fake_api: FakeApi) -> Settings:
    """Settings whose live sources point at the fake API."""
    return settings.replace(
        source="coingecko",
        coingecko_url=f"{fake_api.url}/coingecko",
        coinbase_url=f"{fake_api.url}/coinbase",
    )


@dataclass
class WebhookSink:
    """A Slack-compatible webhook on 127.0.0.1 that records (path, body) of each POST."""

    url: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[WebhookSink]:
        sink = cls("")

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "webhook-sink") as sink.url:
            yield sink


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    """A webhook of this test's own (the e2e suite shares one across its servers)."""
    with WebhookSink.start() as sink:
        yield sink
