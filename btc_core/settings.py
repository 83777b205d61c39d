"""Every setting of the pipeline, read from ``BTC_*`` environment variables in this one place.

Orchestrators and the CLI build a :class:`Settings` with :meth:`Settings.from_env` and may
override single fields with :func:`dataclasses.replace`; nothing else reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from btc_core.errors import ConfigError
from btc_core.lake_config import LakeConfig  # pure parsing, no DuckDB extension

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPLAY_FILE = PROJECT_ROOT / "data" / "replay" / "btc_hourly_2023-10-01_2023-12-31.csv"
SOURCES = ("replay", "coingecko", "coinbase")
NOTIFY_CHANNELS = ("stdout", "webhook", "file", "none")
# Where orchestrators find the secrets: the worker's environment (strict hybrid) or
# Prefect Secret blocks held by the control plane.
SECRETS_FROM = ("env", "prefect-blocks")
# What orchestrators publish as artifacts: prices and charts ("full"), counts only ("summary").
ARTIFACTS = ("full", "summary", "none")
# Where the 90-day chart goes: embedded in an artifact on the control plane ("inline"), written to
# worker-side storage with only a link published ("link"), or nowhere; "auto" follows ARTIFACTS.
CHARTS = ("auto", "inline", "link", "none")


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Secrets (API key, webhook URL) are excluded from ``repr``."""

    source: str = "replay"
    failover_source: str = "coinbase"
    replay_file: Path = DEFAULT_REPLAY_FILE
    db_path: Path = PROJECT_ROOT / "var" / "btc.duckdb"
    lock_timeout_s: float = 60.0
    # The shared store (docs/ducklake.md): empty keeps the local DuckDB file at db_path;
    # ``ducklake:postgres:<libpq key=value ...>`` is DuckLake with its catalog in PostgreSQL and
    # its Parquet files under lake_data_path (s3://bucket/prefix/ or a folder all hosts mount).
    store_url: str = ""
    lake_data_path: str = ""
    # Inserts of at most this many rows stay in the catalog until compaction flushes them
    # (0 = every insert writes a Parquet file).
    lake_inline_rows: int = 100
    # S3 for lake_data_path: the standard AWS_* variables (or BTC_AWS_*), an optional endpoint
    # (MinIO, moto, ...: http://host:port).
    s3_endpoint_url: str = ""
    aws_region: str = "us-east-1"
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    coingecko_url: str = "https://api.coingecko.com/api/v3"
    coingecko_api_key: str = ""
    coingecko_key_kind: str = "demo"
    coinbase_url: str = "https://api.exchange.coinbase.com"
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    http_retries: int = 3
    retry_base_s: float = 2.0
    retry_max_wait_s: float = 30.0
    task_timeout_s: float = 300.0
    extract_cache_s: float = 300.0
    lookback_hours: int = 24
    max_staleness_s: float = 3600.0
    max_price_usd: float = 10_000_000.0
    notify: str = "stdout"
    webhook_url: str = ""
    notify_file: Path = PROJECT_ROOT / "var" / "notifications.jsonl"
    alerts_webhook_url: str = ""
    secrets_from: str = "env"
    artifacts: str = "full"
    chart: str = "auto"
    chart_dir: str = ""  # worker-side folder for BTC_CHART=link; empty: "charts" next to the DB
    # Base URL under which the worker-side chart_dir is published (your web server or bucket);
    # empty: the link artifact holds the file's path on the worker.
    chart_url: str = ""
    # Name of a Prefect global concurrency limit that writers also hold; only useful when several
    # hosts write one shared store (a DuckLake always uses one: btc-duckdb-writer by default).
    # A local DuckDB file needs only the core's file lock.
    writer_limit: str = ""
    # Size of the Dask LocalCluster of flows/dask_backfill.py (worker processes, one thread each).
    dask_workers: int = 2
    # Prefect's own client variables, read here too so `btc doctor` can check the control plane
    # over plain HTTP (btc_core never imports Prefect).
    prefect_api_url: str = ""
    prefect_api_auth_string: str = ""
    # Test switch for crash drills: pause this long inside the load transaction, after the
    # upsert and before the commit, so a test can kill -9 the process there.
    pause_before_commit_s: float = 0.0

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``BTC_<FIELD>`` variables (upper case), then apply keyword ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "prefect_api_url": env.get("PREFECT_API_URL", ""),
            "prefect_api_auth_string": env.get("PREFECT_API_AUTH_STRING", ""),
        }
        for name in AWS_FIELDS:  # the standard AWS variables; BTC_AWS_* (below) win
            raw = env.get(name.upper()) or (
                env.get("AWS_DEFAULT_REGION") if name == "aws_region" else None
            )
            if raw:
                values[name] = raw
        for f in fields(cls):
            raw = env.get(f"BTC_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`ConfigError` with one clear line for an impossible combination."""
        if self.source not in SOURCES:
            raise ConfigError(f"unknown source {self.source!r}; choose one of {', '.join(SOURCES)}")
        if self.failover_source not in (*SOURCES, "none"):
            raise ConfigError(
                f"unknown failover source {self.failover_source!r}; "
                f"choose one of {', '.join(SOURCES)} or none"
            )
        if self.notify not in NOTIFY_CHANNELS:
            raise ConfigError(
                f"unknown notify channel {self.notify!r}; choose one of {', '.join(NOTIFY_CHANNELS)}"
            )
        if self.secrets_from not in SECRETS_FROM:
            raise ConfigError(f"BTC_SECRETS_FROM must be one of {', '.join(SECRETS_FROM)}")
        if self.artifacts not in ARTIFACTS:
            raise ConfigError(f"BTC_ARTIFACTS must be one of {', '.join(ARTIFACTS)}")
        if self.chart not in CHARTS:
            raise ConfigError(f"BTC_CHART must be one of {', '.join(CHARTS)}")
        if self.chart == "inline" and self.artifacts != "full":
            raise ConfigError(
                f"BTC_CHART=inline puts prices on the control plane, which BTC_ARTIFACTS="
                f"{self.artifacts} keeps off it; use BTC_CHART=link or none"
            )
        if self.coingecko_key_kind not in ("demo", "pro"):
            raise ConfigError("BTC_COINGECKO_KEY_KIND must be 'demo' or 'pro'")
        for name in (
            "lock_timeout_s",
            "connect_timeout_s",
            "read_timeout_s",
            "max_price_usd",
            "task_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"BTC_{name.upper()} must be > 0")
        if self.dask_workers < 1:
            raise ConfigError("BTC_DASK_WORKERS must be >= 1")
        if self.http_retries < 0 or self.lookback_hours <= 0:
            raise ConfigError("BTC_HTTP_RETRIES must be >= 0 and BTC_LOOKBACK_HOURS > 0")
        if self.store_url:
            LakeConfig.from_settings(self)

    def chart_mode(self) -> str:
        """The chart's place: ``inline`` (artifact), ``link`` (worker-side file) or ``none``."""
        if self.artifacts == "none":
            return "none"
        if self.chart != "auto":
            return self.chart
        return {"full": "inline", "summary": "link"}.get(self.artifacts, "none")

    def charts_folder(self) -> Path:
        """Where ``BTC_CHART=link`` writes the chart on the worker."""
        return (
            Path(self.chart_dir).expanduser() if self.chart_dir else self.db_path.parent / "charts"
        )

    def require_secrets(self) -> None:
        """Fail clearly when a channel needs a secret that is not set (after secrets resolve)."""
        if self.notify == "webhook" and not self.webhook_url:
            raise ConfigError("notify=webhook needs BTC_WEBHOOK_URL (a secret) to be set")

    def secrets(self) -> list[str]:
        """The secret values in force, for redaction."""
        return [getattr(self, name) for name in sorted(SECRET_FIELDS) if getattr(self, name)]


SECRET_FIELDS = frozenset(
    {
        "coingecko_api_key",
        "webhook_url",
        "alerts_webhook_url",
        "prefect_api_auth_string",
        "aws_secret_access_key",
        "store_url",  # a libpq string may carry password=...
    }
)
AWS_FIELDS = ("aws_region", "aws_access_key_id", "aws_secret_access_key")


def _coerce(name: str, type_name: object, raw: str) -> object:
    kind = str(type_name)
    try:
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
        if kind == "Path":
            return Path(raw).expanduser()
    except ValueError:
        raise ConfigError(f"BTC_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
