"""Resources: the DuckDB store, the price source (live or replay behind one interface), the notifier.

Every field is the :class:`~btc_core.settings.Settings` field of the same name, so the Dagster UI
shows the configuration in force; :meth:`BtcResource.settings` hands the typed values to
btc_core's one settings reader, which checks them (the fields left empty come from the ``BTC_*``
environment, as everywhere). :func:`resources_for` maps ``Settings.from_env()`` onto these
resources; secrets are never copied into config: they stay :class:`~dagster.EnvVar` references,
resolved in the run process only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from dagster import ConfigurableResource, EnvVar

from btc_core.notify import notify
from btc_core.observations import Batch, Window
from btc_core.pipeline import store_for
from btc_core.policy import extract_try
from btc_core.settings import SECRET_FIELDS, Settings
from btc_core.store import PriceStore
from btc_core.transform import Latest


def default(name: str) -> Any:
    """btc_core's default of the setting ``name``."""
    return Settings.model_fields[name].default


class BtcResource(ConfigurableResource):
    """A resource whose fields are btc_core settings."""

    def settings(self) -> Settings:
        """btc_core's :class:`Settings`: these fields over the ``BTC_*`` environment (an empty
        field, such as a secret that is not set, leaves the environment's value)."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return Settings.from_env(**{k: v for k, v in fields.items() if v != ""})


class DuckDBStore(BtcResource):
    """The DuckDB file of the output contract, opened through btc_core's one-writer lock."""

    db_path: str = str(default("db_path"))
    lock_timeout_s: float = default("lock_timeout_s")
    # a busy file is retried with the policy of every step; artifacts: what the asset pages show
    http_retries: int = default("http_retries")
    retry_base_s: float = default("retry_base_s")
    retry_max_wait_s: float = default("retry_max_wait_s")
    artifacts: str = default("artifacts")

    def store(self) -> PriceStore:
        """btc_core's store for this file: every access takes the writer lock."""
        return store_for(self.settings())


class PriceSource(BtcResource):
    """Where observations come from: ``fetch`` returns a validated batch (one try; the asset
    retries transient failures, btc_core fails over between live sources)."""

    max_price_usd: float = default("max_price_usd")

    def fetch(self, window: Window | None = None, attempt: int = 1) -> Batch:
        """Observations inside ``window`` (the latest when None): try number ``attempt`` of the
        extract step, with btc_core's failover policy."""
        return extract_try(self.settings(), window, attempt=attempt)

    def fingerprint(self) -> str | None:
        """A cheap token that changes when new data can be fetched, or None if unknowable."""
        return None


class ReplaySource(PriceSource):
    """Recorded hourly candles from a CSV: offline, deterministic, the demo and test default."""

    replay_file: str = str(default("replay_file"))

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
    failover_source: str = default("failover_source")
    coingecko_url: str = default("coingecko_url")
    coingecko_api_key: str = ""
    coingecko_key_kind: str = default("coingecko_key_kind")
    coinbase_url: str = default("coinbase_url")
    connect_timeout_s: float = default("connect_timeout_s")
    read_timeout_s: float = default("read_timeout_s")
    http_retries: int = default("http_retries")
    retry_base_s: float = default("retry_base_s")
    retry_max_wait_s: float = default("retry_max_wait_s")
    max_staleness_s: float = default("max_staleness_s")


class Notifier(BtcResource):
    """Where the daily-average message goes: stdout, a Slack-compatible webhook, a file, none."""

    notify: str = default("notify")
    webhook_url: str = ""
    notify_file: str = str(default("notify_file"))
    connect_timeout_s: float = default("connect_timeout_s")
    read_timeout_s: float = default("read_timeout_s")

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
