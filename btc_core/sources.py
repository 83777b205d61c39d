"""Price sources behind one interface: CoinGecko (live), Coinbase Exchange (live failover), replay.

``fetch(None)`` means "the latest": a spot price for live sources, every recorded row up to now
for replay. ``fetch(window)`` returns the observations inside the window. Every source returns a
validated :class:`~btc_core.observations.Batch` or raises a typed
:class:`~btc_core.errors.SourceError`.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from btc_core import __version__, replay_csv
from btc_core.errors import (
    BadPayload,
    ClientError,
    InputError,
    RateLimited,
    ServerError,
    SourceError,
    SourceTimeout,
    SourceUnreachable,
)
from btc_core.observations import (
    Batch,
    Unaccounted,
    Window,
    rows_sql,
    utc_now,
    validate,
    worker_log,
)
from btc_core.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = f"btc-orchestration/{__version__} (reference pipeline; python-requests)"


class PriceSource(Protocol):
    """What every source offers."""

    name: str

    def fetch(self, window: Window | None = None) -> Batch:
        """Validated observations for ``window``, or the latest when ``window`` is None."""
        ...


class HttpJson:
    """GET JSON with timeouts, a User-Agent and typed failures; secrets stay out of messages.

    ``requests`` is imported by the live sources only: a replay has no use for it."""

    def __init__(self, source: str, base_url: str, settings: Settings, headers: dict[str, str]):
        import requests

        self.source = source
        self.base_url = base_url.rstrip("/")
        self.timeout = (settings.connect_timeout_s, settings.read_timeout_s)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self.session.headers.update(headers)

    def get(self, path: str, params: dict[str, Any]) -> Any:
        import requests

        where = f"{self.source} GET /{path.lstrip('/')}"
        try:
            resp = self.session.get(
                f"{self.base_url}/{path.lstrip('/')}", params=params, timeout=self.timeout
            )
        except requests.ConnectTimeout:
            raise SourceTimeout(f"{where}: connect timeout after {self.timeout[0]} s") from None
        except requests.ReadTimeout:
            raise SourceTimeout(f"{where}: no answer within {self.timeout[1]} s") from None
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "connection failed"
            raise SourceUnreachable(f"{where}: {reason} ({self.base_url})") from None
        if resp.status_code == 429:
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            hint = f", retry after {retry_after:g} s" if retry_after is not None else ""
            raise RateLimited(f"{where}: HTTP 429 rate limited{hint}", retry_after)
        if resp.status_code >= 500:
            raise ServerError(f"{where}: HTTP {resp.status_code} server error")
        if resp.status_code >= 400:
            raise ClientError(f"{where}: HTTP {resp.status_code} (check the URL and API key)")
        try:
            return resp.json()
        except (ValueError, RecursionError):  # requests' JSONDecodeError; deep nesting
            # The shape only, never the text: it may hold prices (strict hybrid: no data values
            # in messages that reach the control plane).
            kind = resp.headers.get("Content-Type", "no content type").split(";")[0]
            raise BadPayload(
                f"{where}: answer is not JSON ({kind}, {len(resp.content)} bytes)"
            ) from None


def _retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait: delay-seconds or an HTTP-date (RFC 9110,
    10.2.3), none below 0; None when absent or unreadable (NaN, infinite, not a date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class CoinGecko:
    """CoinGecko API v3: ``simple/price`` for the latest, ``market_chart/range`` for windows."""

    name = "coingecko"
    # CoinGecko returns hourly points for ranges between 1 and 90 days.
    chunk = timedelta(days=90)

    def __init__(self, settings: Settings):
        headers = {}
        if key := settings.coingecko_api_key.get_secret_value():
            headers[f"x-cg-{settings.coingecko_key_kind}-api-key"] = key
        self.http = HttpJson(self.name, settings.coingecko_url, settings, headers)
        self.settings = settings

    def fetch(self, window: Window | None = None) -> Batch:
        if window is None:
            data = self.http.get(
                "simple/price",
                {"ids": "bitcoin", "vs_currencies": "usd", "include_last_updated_at": "true"},
            )
            coin = _key(data, "bitcoin", "simple/price")
            latest = (
                _key(coin, "last_updated_at", "simple/price"),
                _key(coin, "usd", "simple/price"),
            )
            return _validate_rows(self, [latest], epoch_scale=1_000_000, latest=True)
        rows: list[tuple[Any, Any]] = []
        for part in window.chunks(self.chunk):
            data = self.http.get(
                "coins/bitcoin/market_chart/range",
                {
                    "vs_currency": "usd",
                    "from": int(part.start.timestamp()),
                    "to": int(part.end.timestamp()),
                },
            )
            prices = _key(data, "prices", "market_chart/range")
            if not isinstance(prices, list):
                raise BadPayload(f"{self.name}: 'prices' is not a list (API changed?)")
            rows += [_pair(p, 0, 1) for p in prices]
        return _validate_rows(self, rows, epoch_scale=1_000, window=window)


class Coinbase:
    """Coinbase Exchange public candles ``[time, low, high, open, close, volume]``; price = close."""

    name = "coinbase"
    chunk = timedelta(hours=300)  # the API returns at most 300 candles per request

    def __init__(self, settings: Settings):
        self.http = HttpJson(self.name, settings.coinbase_url, settings, {})
        self.settings = settings

    def fetch(self, window: Window | None = None) -> Batch:
        latest = window is None
        window = window or Window.last_hours(2)
        rows: list[tuple[Any, Any]] = []
        for part in window.chunks(self.chunk):
            candles = self.http.get(
                "products/BTC-USD/candles",
                {"granularity": 3600, "start": part.start.isoformat(), "end": part.end.isoformat()},
            )
            if not isinstance(candles, list):
                raise BadPayload(f"{self.name}: candles answer is not a list (API changed?)")
            rows += [_pair(c, 0, 4) for c in candles]
        if latest and rows:
            rows = [max(rows, key=lambda r: _as_time(r[0]))]
        return _validate_rows(
            self, rows, epoch_scale=1_000_000, window=None if latest else window, latest=latest
        )


class Replay:
    """Recorded hourly candles from a CSV shaped like ``shared/data`` (price = ``close``).

    Read by :mod:`btc_core.replay_csv`: DuckDB in one parallel pass, checked against a count of
    the file's lines, and read again line by line if DuckDB lost or refused any; rows it cannot
    split are reported with their line numbers.
    """

    name = "replay"

    def __init__(self, settings: Settings, path: Path | None = None):
        self.path = Path(path or settings.replay_file)
        self.settings = settings

    def fetch(self, window: Window | None = None) -> Batch:
        layout = replay_csv.read_layout(self.path)
        con = duckdb.connect()
        try:
            if layout.new_line == "\r":
                log.info("%s: lines end in a lone carriage return; reading line by line", self.path)
            else:
                try:
                    return self._validate(
                        con,
                        window,
                        replay_csv.duckdb_rows(layout),
                        skipped_rows=replay_csv.duckdb_skipped,
                        expected_rows=replay_csv.count_records(self.path),
                    )
                except (Unaccounted, duckdb.Error) as exc:
                    log.info(
                        "%s: DuckDB's reader fell short (%s); reading line by line",
                        self.path,
                        type(exc).__name__,
                    )
            slow = replay_csv.python_rows(con, layout)
            return self._validate(
                con, window, slow.sql, skipped_rows=lambda _: slow.skipped, line_numbers=slow.lines
            )
        except duckdb.Error as exc:
            worker_log.error("%s: %s", self.path, str(exc).strip())
            raise InputError(
                f"cannot read replay file {self.path}: {type(exc).__name__} (details in the "
                "worker's log)"
            ) from None
        except OSError as exc:
            raise InputError(
                f"cannot read replay file {self.path}: {exc.strerror or exc}"
            ) from None
        finally:
            con.close()

    def _validate(
        self, con: duckdb.DuckDBPyConnection, window: Window | None, raw_sql: str, **reader: Any
    ) -> Batch:
        return validate(
            con,
            raw_sql,
            source=self.name,
            epoch_scale=1_000_000,
            max_price=self.settings.max_price_usd,
            first_line=2,  # line 1 is the header
            window=window,
            empty_error=InputError,
            what=f"file {self.path.name}",
            **reader,
        )


def _validate_rows(
    source: CoinGecko | Coinbase,
    rows: list[tuple[Any, Any]],
    *,
    epoch_scale: int,
    window: Window | None = None,
    latest: bool = False,
) -> Batch:
    now = utc_now()
    con = duckdb.connect()
    try:
        return validate(
            con,
            rows_sql(rows),
            source=source.name,
            epoch_scale=epoch_scale,
            max_price=source.settings.max_price_usd,
            window=window,
            now=now,
            not_before=now - timedelta(seconds=source.settings.max_staleness_s) if latest else None,
        )
    finally:
        con.close()


def _key(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        # The shape only: a hostile answer's keys could carry anything (strict hybrid).
        got = f"an object of {len(data)} keys" if isinstance(data, dict) else type(data).__name__
        raise BadPayload(f"{where}: missing key {key!r} in the answer (got {got}); API changed?")
    return data[key]


def _pair(item: Any, t: int, p: int) -> tuple[Any, Any]:
    """(time, price) from a list item; malformed items become a row the validator rejects."""
    if isinstance(item, list | tuple) and len(item) > max(t, p):
        return item[t], item[p]
    return None, json.dumps(item)[:40]


def _as_time(value: Any) -> float:
    """``value`` as a number to pick the newest candle by; -inf for anything else (text, null,
    an integer too large for a double): the validator judges the row that is picked."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("-inf")


def build_source(name: str, settings: Settings, replay_file: Path | None = None) -> PriceSource:
    """The source called ``name`` configured from ``settings``."""
    if name == "coingecko":
        return CoinGecko(settings)
    if name == "coinbase":
        return Coinbase(settings)
    if name == "replay":
        return Replay(settings, replay_file)
    raise SourceError(f"unknown source {name!r}")
