"""Every setting of the pipeline, read from ``BTC_*`` environment variables in this one place.

pydantic-settings reads and validates them. Orchestrators and the CLI build a :class:`Settings`
with :meth:`Settings.from_env` and derive variants with :meth:`Settings.replace`; nothing else
reads the environment. Secrets are :class:`~pydantic.SecretStr`: hidden in ``repr`` and in every
error message, read with ``.get_secret_value()`` only where they are used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote, urlparse

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from btc_core.errors import ConfigError
from btc_core.lake_config import LakeConfig  # pure parsing, no DuckDB extension

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _installed_from() -> Path | None:
    """The folder this environment installed the project from (``uv sync`` installs it in
    editable mode from the checkout), or None."""
    try:
        text = distribution("btc-orchestration").read_text("direct_url.json") or "{}"
    except PackageNotFoundError:
        return None
    url = urlparse(json.loads(text).get("url", ""))
    return Path(unquote(url.path)) if url.scheme == "file" else None


# Where the data goes by default (var/: the DuckDB file, notifications, charts): the checkout of
# this environment. A worker's flow run imports this code from a clone that a pull step made in
# a temporary folder (git, S3, docs/hybrid.md); its data stays in the worker's own checkout.
DATA_ROOT = _installed_from() or PROJECT_ROOT
DEFAULT_REPLAY_FILE = PROJECT_ROOT / "data" / "replay" / "btc_hourly_2023-10-01_2023-12-31.csv"
SourceName = Literal["replay", "coingecko", "coinbase"]
SOURCES: tuple[str, ...] = get_args(SourceName)
NotifyChannel = Literal["stdout", "webhook", "file", "none"]
NOTIFY_CHANNELS: tuple[str, ...] = get_args(NotifyChannel)
SHARED_CSV_NAME = "btc_hourly_2019-11-20_2023-12-31.csv"
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]
Positive = Annotated[float, Field(gt=0)]
MAX_STORABLE_PRICE = 1e10  # DECIMAL(18,8): 10 integer digits


def _aws(name: str, *more: str) -> Any:
    """A field read from ``BTC_<NAME>`` or the standard AWS variable(s) (BTC_ wins)."""
    return AliasChoices(f"BTC_{name}", name, *more)


class Settings(BaseSettings):
    """Runtime configuration, frozen. Secret values never show in ``repr``."""

    model_config = SettingsConfigDict(
        env_prefix="BTC_",
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        allow_inf_nan=False,  # BTC_LOCK_TIMEOUT_S=nan or inf is a typo, not a setting
    )

    source: SourceName = "replay"
    failover_source: SourceName | Literal["none"] = "coinbase"
    replay_file: UserPath = DEFAULT_REPLAY_FILE
    db_path: UserPath = DATA_ROOT / "var" / "btc.duckdb"
    lock_timeout_s: Positive = 60.0
    # The shared store (docs/ducklake.md): empty keeps the local DuckDB file at db_path;
    # ``ducklake:postgres:<libpq key=value ...>`` is DuckLake with its catalog in PostgreSQL and
    # its Parquet files under lake_data_path (s3://bucket/prefix/ or a folder all hosts mount).
    # A libpq string may carry password=..., so it is a secret.
    store_url: SecretStr = SecretStr("")
    lake_data_path: str = ""
    # Inserts of at most this many rows stay in the catalog until compaction flushes them
    # (0 = every insert writes a Parquet file).
    lake_inline_rows: Annotated[int, Field(ge=0)] = 100
    # S3 for lake_data_path: the standard AWS_* variables (or BTC_AWS_*), an optional endpoint
    # (MinIO, moto, ...: http://host:port).
    s3_endpoint_url: str = ""
    aws_region: str = Field("us-east-1", validation_alias=_aws("AWS_REGION", "AWS_DEFAULT_REGION"))
    aws_access_key_id: str = Field("", validation_alias=_aws("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr = Field(
        SecretStr(""), validation_alias=_aws("AWS_SECRET_ACCESS_KEY")
    )
    coingecko_url: str = "https://api.coingecko.com/api/v3"
    coingecko_api_key: SecretStr = SecretStr("")
    coingecko_key_kind: Literal["demo", "pro"] = "demo"
    coinbase_url: str = "https://api.exchange.coinbase.com"
    connect_timeout_s: Positive = 3.05
    read_timeout_s: Positive = 10.0
    # The retry policy of every path (btc_core/policy.py): retries of the first source for
    # retryable failures, exponential backoff from retry_base_s, capped at retry_max_wait_s.
    http_retries: Annotated[int, Field(ge=0)] = 3
    retry_base_s: Annotated[float, Field(ge=0)] = 2.0
    retry_max_wait_s: Annotated[float, Field(ge=0)] = 30.0
    task_timeout_s: Positive = 300.0
    extract_cache_s: Positive = 300.0
    max_staleness_s: Positive = 3600.0
    # Daily averages sum prices as DECIMAL(18,8) (btc_core/daily.py): a bound at or above 1e10
    # would admit prices that fail the whole load in DuckDB (its message quoting them).
    max_price_usd: Annotated[float, Field(gt=0, lt=MAX_STORABLE_PRICE)] = 10_000_000.0
    notify: NotifyChannel = "stdout"
    webhook_url: SecretStr = SecretStr("")
    notify_file: UserPath = DATA_ROOT / "var" / "notifications.jsonl"
    alerts_webhook_url: SecretStr = SecretStr("")
    # Where orchestrators find the secrets: the worker's environment (strict hybrid) or
    # Prefect Secret blocks held by the control plane.
    secrets_from: Literal["env", "prefect-blocks"] = "env"
    # What orchestrators publish as artifacts: prices and charts ("full"), counts only ("summary").
    artifacts: Literal["full", "summary", "none"] = "full"
    # Where the 90-day chart goes: embedded in an artifact on the control plane ("inline"), written
    # to worker-side storage with only a link published ("link"), or nowhere; "auto" follows
    # artifacts.
    chart: Literal["auto", "inline", "link", "none"] = "auto"
    chart_dir: str = ""  # worker-side folder for BTC_CHART=link; empty: "charts" next to the DB
    # Base URL under which the worker-side chart_dir is published (your web server or bucket);
    # empty: the link artifact holds the file's path on the worker.
    chart_url: str = ""
    # Name of a Prefect global concurrency limit that writers also hold; only useful when several
    # hosts write one shared store (a DuckLake always uses one: btc-duckdb-writer by default).
    # A local DuckDB file needs only the core's file lock.
    writer_limit: str = ""
    # Size of the Dask LocalCluster of flows/dask_backfill.py (worker processes, one thread each).
    dask_workers: Annotated[int, Field(ge=1)] = 2
    # The warm path (flows/warm.py) names its runs in progress in a heartbeat event this often;
    # a run no heartbeat has named for 3 beats (its process killed, its host lost) is Crashed.
    warm_heartbeat_s: Annotated[float, Field(ge=1, le=600)] = 30.0

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chart == "inline" and self.artifacts != "full":
            raise ValueError(
                f"BTC_CHART=inline puts prices on the control plane, which BTC_ARTIFACTS="
                f"{self.artifacts} keeps off it; use BTC_CHART=link or none"
            )
        if self.store_url.get_secret_value():
            LakeConfig.from_settings(self)
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the ``BTC_*`` variables of ``env`` (default: the process environment), then
        apply the keyword ``overrides`` that are not None. :class:`ConfigError`, one line, when
        a value is wrong."""
        values: dict[str, object] = {**_env_values(os.environ if env is None else env)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._validated(values)

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied and checked like the environment's values."""
        return self._validated({**dict(self), **changes})

    @classmethod
    def _validated(cls, values: dict[str, Any]) -> Settings:
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None

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
        if self.notify == "webhook" and not self.webhook_url.get_secret_value():
            raise ConfigError("notify=webhook needs BTC_WEBHOOK_URL (a secret) to be set")

    def secrets(self) -> list[str]:
        """The secret values in force, for redaction."""
        values = (getattr(self, name).get_secret_value() for name in sorted(SECRET_FIELDS))
        return [value for value in values if value]


SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if info.annotation is SecretStr
)


def shared_csv_path() -> Path | None:
    """The full recorded data set (36,061 hourly candles, for tests and benchmarks):
    ``$BTC_SHARED_DATA`` (the file or its folder), else ``../shared/data`` beside the project."""
    given = os.environ.get("BTC_SHARED_DATA")
    for folder in (Path(given) if given else None, PROJECT_ROOT.parent / "shared" / "data"):
        if folder is None:
            continue
        path = folder / SHARED_CSV_NAME if folder.is_dir() else folder
        if path.is_file():
            return path
    return None


def _env_values(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that name a field, by field name: ``BTC_<FIELD>``, or the
    field's aliases in their order (``BTC_AWS_REGION`` before ``AWS_REGION``); matched without
    regard to case and empty ones ignored, as pydantic-settings reads the environment."""
    given = {key.upper(): value for key, value in env.items() if value != ""}
    values: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        keys = alias.choices if isinstance(alias, AliasChoices) else [f"BTC_{name}"]
        found = [given[k.upper()] for k in keys if isinstance(k, str) and k.upper() in given]
        if found:
            values[name] = found[0]
    return values


def _one_line(exc: ValidationError) -> str:
    """The first error as one line naming the variable: ``BTC_X='v': what is wrong``."""
    error = exc.errors(include_url=False)[0]
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a check across fields
        return message
    name = str(error["loc"][0])
    field = name.lower().removeprefix("btc_")
    variable = name if name.isupper() else f"BTC_{name.upper()}"
    shown = "***" if field in SECRET_FIELDS else repr(error.get("input"))
    return f"{variable}={shown}: {message[:1].lower()}{message[1:]}"
