"""Resources: the DuckDB store, the price source (live or replay behind one interface), the notifier.

Every field is the :class:`~btc_core.settings.Settings` field of the same name, so the Dagster UI
shows the configuration in force and btc_core's one settings reader parses and checks it.
:func:`resources_for` maps ``Settings.from_env()`` onto these resources; secrets are never copied
into config: they stay :class:`~dagster.EnvVar` references, resolved in the run process only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from dagster import ConfigurableResource, EnvVar

from btc_core.notify import notify
from btc_core.observations import Batch, Window
from btc_core.pipeline import extract, store_for
from btc_core.settings import SECRET_FIELDS, Settings
from btc_core.store import Store
from btc_core.transform import Latest


class BtcResource(ConfigurableResource):
    """A resource whose fields are btc_core settings."""

    def settings(self) -> Settings:
        """These fields as btc_core :class:`Settings` (unset fields keep btc_core's defaults)."""
        env = {f"BTC_{name.upper()}": str(getattr(self, name)) for name in type(self).model_fields}
        return Settings.from_env(env=env)


class DuckDBStore(BtcResource):
    """The DuckDB file of the output contract, opened through btc_core's one-writer lock."""

    db_path: str = str(Settings.db_path)
    lock_timeout_s: float = Settings.lock_timeout_s

    def store(self) -> Store:
        """btc_core's store for this file: every access takes the writer lock."""
        return store_for(self.settings())


class PriceSource(BtcResource):
    """Where observations come from: ``fetch`` returns a validated batch (btc_core retries
    transient failures and fails over between live sources)."""

    max_price_usd: float = Settings.max_price_usd

    def fetch(self, window: Window | None = None) -> Batch:
        """Observations inside ``window``, or the latest when ``window`` is None."""
        return extract(self.settings(), window)

    def fingerprint(self) -> str | None:
        """A cheap token that changes when new data can be fetched, or None if unknowable."""
        return None


class ReplaySource(PriceSource):
    """Recorded hourly candles from a CSV: offline, deterministic, the demo and test default."""

    replay_file: str = str(Settings.replay_file)

    def fingerprint(self) -> str | None:
        """Path, modification time and size of the replay file (None while it is missing)."""
        path = Path(self.replay_file).resolve()
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return f"{path}:{stat.st_mtime_ns}:{stat.st_size}"


class LiveSource(PriceSource):
    """CoinGecko or Coinbase Exchange over HTTP, with the other one as failover."""

    source: str = "coingecko"
    failover_source: str = Settings.failover_source
    coingecko_url: str = Settings.coingecko_url
    coingecko_api_key: str = ""
    coingecko_key_kind: str = Settings.coingecko_key_kind
    coinbase_url: str = Settings.coinbase_url
    connect_timeout_s: float = Settings.connect_timeout_s
    read_timeout_s: float = Settings.read_timeout_s
    http_retries: int = Settings.http_retries
    retry_max_wait_s: float = Settings.retry_max_wait_s
    max_staleness_s: float = Settings.max_staleness_s


class Notifier(BtcResource):
    """Where the daily-average message goes: stdout, a Slack-compatible webhook, a file, none."""

    notify: str = Settings.notify
    webhook_url: str = ""
    notify_file: str = str(Settings.notify_file)
    connect_timeout_s: float = Settings.connect_timeout_s
    read_timeout_s: float = Settings.read_timeout_s

    def send(self, latest: Latest | None) -> str:
        """Send the message; return where it went. Raises NotifyError on failure."""
        return notify(self.settings(), latest)


R = TypeVar("R", bound=BtcResource)


def from_settings(cls: type[R], settings: Settings) -> R:
    """``cls`` configured from ``settings``; a secret that is set becomes its ``BTC_*`` EnvVar."""
    values: dict[str, Any] = {}
    for name in cls.model_fields:
        value = getattr(settings, name)
        if name in SECRET_FIELDS:
            value = EnvVar(f"BTC_{name.upper()}") if value else ""
        values[name] = str(value) if isinstance(value, Path) else value
    return cls(**values)


def resources_for(settings: Settings) -> dict[str, BtcResource]:
    """The resources of one environment: replay or live source as ``settings.source`` says.

    Secrets must come from the environment (``Settings.from_env``): they are passed on as EnvVar.
    """
    source = ReplaySource if settings.source == "replay" else LiveSource
    return {
        "duckdb": from_settings(DuckDBStore, settings),
        "price_source": from_settings(source, settings),
        "notifier": from_settings(Notifier, settings),
    }
