"""The shared store's settings, parsed and checked: ``BTC_STORE_URL`` and what goes with it.

    BTC_STORE_URL=ducklake:postgres:dbname=btc host=db.internal user=btc
    BTC_LAKE_DATA_PATH=s3://btc-lake/prices/
    BTC_S3_ENDPOINT_URL=http://minio.internal:9000      # optional: an S3-compatible server
    AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...    # or BTC_AWS_*; PGPASSWORD for Postgres

Pure parsing (no DuckDB extension is loaded here), so ``Settings`` validation rejects a bad URL
with one line before anything runs. Nothing here ever puts a credential in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from btc_core.errors import ConfigError

if TYPE_CHECKING:
    from btc_core.settings import Settings

PREFIX = "ducklake:postgres:"
EXAMPLE = "ducklake:postgres:dbname=btc host=127.0.0.1 user=postgres"
LIBPQ_SECRETS = ("password",)


@dataclass(frozen=True)
class S3Endpoint:
    """Where and how to reach S3; the keys stay out of ``repr``."""

    region: str
    key_id: str
    secret: str
    endpoint: str = ""  # host:port of an S3-compatible server; empty for AWS itself
    use_ssl: bool = True

    def __repr__(self) -> str:
        return f"S3Endpoint(region={self.region!r}, endpoint={self.endpoint!r}, ssl={self.use_ssl})"


@dataclass(frozen=True)
class LakeConfig:
    """A DuckLake: catalog in PostgreSQL (a libpq string), data files under ``data_path``."""

    catalog: str  # libpq "key=value ..." string
    data_path: str  # s3://bucket/prefix/ or an absolute folder, with a trailing slash
    inline_rows: int = 0
    s3: S3Endpoint | None = None

    def __repr__(self) -> str:
        return f"LakeConfig({self.describe()!r}, inline_rows={self.inline_rows})"

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeConfig:
        """Parse and check the settings; :class:`ConfigError` (one line) on bad input."""
        catalog = parse_store_url(settings.store_url.get_secret_value())
        data_path = settings.lake_data_path.strip()
        if not data_path:
            raise ConfigError(
                "BTC_STORE_URL is a DuckLake: set BTC_LAKE_DATA_PATH (s3://bucket/prefix/)"
            )
        if settings.lake_inline_rows < 0:
            raise ConfigError("BTC_LAKE_INLINE_ROWS must be >= 0")
        s3 = None
        if data_path.startswith("s3://"):
            if not urlsplit(data_path).netloc:
                raise ConfigError(f"BTC_LAKE_DATA_PATH={data_path!r} names no bucket")
            s3 = s3_endpoint(settings)
        elif not data_path.startswith("/"):
            raise ConfigError(
                f"BTC_LAKE_DATA_PATH={data_path!r} must be s3://bucket/prefix/ or an absolute "
                "folder that every host mounts"
            )
        return cls(catalog, data_path.rstrip("/") + "/", settings.lake_inline_rows, s3)

    def describe(self) -> str:
        """A one-line description without credentials, for logs and ``btc doctor``."""
        return f"DuckLake (catalog postgres:{redact_libpq(self.catalog)}, data {self.data_path})"


def parse_store_url(url: str) -> str:
    """The libpq string of ``ducklake:postgres:<libpq>``; :class:`ConfigError` otherwise."""
    url = url.strip()
    if not url.startswith(PREFIX):
        scheme = url.split(":", 1)[0] if ":" in url else "a path"
        raise ConfigError(
            f"BTC_STORE_URL must be empty (local DuckDB file) or {PREFIX}<libpq>, "
            f"e.g. '{EXAMPLE}'; got {scheme}:..."
        )
    catalog = url[len(PREFIX) :].strip()
    pairs = dict(_libpq_pairs(catalog))
    if "dbname" not in pairs:
        raise ConfigError(f"BTC_STORE_URL's catalog needs dbname=..., e.g. '{EXAMPLE}'")
    return catalog


def _libpq_pairs(catalog: str) -> list[tuple[str, str]]:
    pairs = []
    for token in catalog.split():
        key, sep, value = token.partition("=")
        if not sep or not key or not value:
            raise ConfigError(
                f"BTC_STORE_URL's catalog must be libpq key=value pairs separated by spaces; "
                f"{key or token[:20]!r} is not one"
            )
        pairs.append((key, value))
    return pairs


def redact_libpq(catalog: str) -> str:
    """The libpq string with any password replaced by ``***``."""
    return " ".join(
        f"{key}=***" if key in LIBPQ_SECRETS else f"{key}={value}"
        for key, value in _libpq_pairs(catalog)
    )


def s3_endpoint(settings: Settings) -> S3Endpoint:
    """S3 access from the settings: keys required, endpoint optional (http://host:port)."""
    if not (settings.aws_access_key_id and settings.aws_secret_access_key.get_secret_value()):
        raise ConfigError(
            "BTC_LAKE_DATA_PATH is on S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or BTC_AWS_ACCESS_KEY_ID / BTC_AWS_SECRET_ACCESS_KEY) on every worker"
        )
    endpoint, use_ssl = "", True
    if settings.s3_endpoint_url:
        parts = urlsplit(settings.s3_endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(
                f"BTC_S3_ENDPOINT_URL={settings.s3_endpoint_url!r} must be http(s)://host[:port]"
            )
        endpoint, use_ssl = parts.netloc, parts.scheme == "https"
    return S3Endpoint(
        settings.aws_region,
        settings.aws_access_key_id,
        settings.aws_secret_access_key.get_secret_value(),
        endpoint,
        use_ssl,
    )
