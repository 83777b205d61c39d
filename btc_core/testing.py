"""Pytest plugin shared by every environment's test suite (``pytest_plugins = ["btc_core.testing"]``).

- With ``BTC_REQUIRE_ALL=1`` (set by ``.ci/run``) a skipped test counts as a failure: CI cannot
  pass by skipping what it was meant to prove.
- Fixtures for the recorded data, isolated settings, and the local fake price API.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from btc_core.fake_api import FakeApi
from btc_core.settings import DEFAULT_REPLAY_FILE, PROJECT_ROOT, Settings

SHARED_CSV_NAME = "btc_hourly_2019-11-20_2023-12-31.csv"


def require_all() -> bool:
    """True when skips must fail (CI)."""
    return os.environ.get("BTC_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if require_all() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but BTC_REQUIRE_ALL=1 forbids skips: {reason}"


def shared_csv_path() -> Path | None:
    """The full recorded data set: ``$BTC_SHARED_DATA`` or ``../shared/data`` beside the repo."""
    candidates = [
        Path(os.environ["BTC_SHARED_DATA"]) if os.environ.get("BTC_SHARED_DATA") else None,
        PROJECT_ROOT.parent / "shared" / "data",
    ]
    for folder in filter(None, candidates):
        path = folder / SHARED_CSV_NAME if folder.is_dir() else folder
        if path.is_file():
            return path
    return None


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
    from dataclasses import replace

    return replace(
        settings,
        source="coingecko",
        coingecko_url=f"{fake_api.url}/coingecko",
        coinbase_url=f"{fake_api.url}/coinbase",
    )
