"""Price sources behind one interface: CoinGecko (live), Coinbase Exchange (live failover), replay.

``fetch(None)`` means "the latest": a spot price for live sources, every recorded row up to now
for replay. ``fetch(window)`` returns the observations inside the window. Every source returns a
validated :class:`~btc_core.observations.Batch` or raises a typed
:class:`~btc_core.errors.SourceError`.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from btc_core import __version__
from btc_core.errors import (
    BadPayload,
    ClientError,
    InputError,
    RateLimited,
    ServerError,
    SourceError,
    SourceTimeout,
    SourceUnreachable,
    is_retryable,
)
from btc_core.observations import Batch, Window, frame_to_sql, utc_now, validate
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
    """GET JSON with timeouts, a User-Agent and typed failures; secrets stay out of messages."""

    def __init__(self, source: str, base_url: str, settings: Settings, headers: dict[str, str]):
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.timeout = (settings.connect_timeout_s, settings.read_timeout_s)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self.session.headers.update(headers)

    def get(self, path: str, params: dict[str, Any]) -> Any:
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
        except (ValueError, requests.JSONDecodeError):
            snippet = " ".join(resp.text[:60].split())
            raise BadPayload(f"{where}: answer is not JSON (starts with {snippet!r})") from None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class CoinGecko:
    """CoinGecko API v3: ``simple/price`` for the latest, ``market_chart/range`` for windows."""

    name = "coingecko"
    # CoinGecko returns hourly points for ranges between 1 and 90 days.
    chunk = timedelta(days=90)

    def __init__(self, settings: Settings):
        headers = {}
        if settings.coingecko_api_key:
            headers[f"x-cg-{settings.coingecko_key_kind}-api-key"] = settings.coingecko_api_key
        self.http = HttpJson(self.name, settings.coingecko_url, settings, headers)
        self.settings = settings

    def fetch(self, window: Window | None = None) -> Batch:
        if window is None:
            data = self.http.get(
                "simple/price",
                {"ids": "bitcoin", "vs_currencies": "usd", "include_last_updated_at": "true"},
            )
            coin = _key(data, "bitcoin", "simple/price")
            rows = [
                (_key(coin, "last_updated_at", "simple/price"), _key(coin, "usd", "simple/price"))
            ]
            return _validate_rows(self, rows, epoch_scale=1_000_000, latest=True)
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
            rows = [max(rows, key=lambda r: float(r[0]) if _is_number(r[0]) else float("-inf"))]
        return _validate_rows(
            self, rows, epoch_scale=1_000_000, window=None if latest else window, latest=latest
        )


class Replay:
    """Recorded hourly candles from a CSV shaped like ``shared/data`` (price = ``close``).

    The header is read first and the dialect given explicitly (no sniffing, all text), so DuckDB
    reads in one parallel pass; rows with too many or too few fields are skipped by DuckDB and
    reported with their line numbers.
    """

    name = "replay"

    def __init__(self, settings: Settings, path: Path | None = None):
        self.path = Path(path or settings.replay_file)
        self.settings = settings

    def fetch(self, window: Window | None = None) -> Batch:
        columns = self._header()
        con = duckdb.connect()
        try:
            spec = ", ".join(f"'{c}': 'VARCHAR'" for c in (c.replace("'", "''") for c in columns))
            path_sql = str(self.path).replace("'", "''")
            con.execute(
                f"""CREATE TEMP VIEW raw AS SELECT "time" AS epoch, "close" AS price
                    FROM read_csv('{path_sql}', auto_detect = false, header = true, delim = ',',
                                  quote = '"', escape = '"', columns = {{{spec}}},
                                  strict_mode = true, ignore_errors = true, store_rejects = true)"""
            )
            return validate(
                con,
                "SELECT * FROM raw",
                source=self.name,
                epoch_scale=1_000_000,
                max_price=self.settings.max_price_usd,
                first_line=2,  # line 1 is the header
                skipped_rows=_malformed,
                window=window,
                empty_error=InputError,
                what=f"file {self.path.name}",
            )
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"cannot read replay file {self.path}: {first}") from None
        finally:
            con.close()

    def _header(self) -> list[str]:
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), [])
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise InputError(f"cannot read replay file {self.path}: {reason}") from None
        missing = {"time", "close"} - set(header)
        if missing:
            raise InputError(
                f"replay file {self.path} has no column {', '.join(sorted(missing))} in its "
                "header (expected the shared/data format: time,date,hour,open,high,close,...)"
            )
        return header


def _malformed(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, str]]:
    """Rows DuckDB's reader skipped, as (line, reason, text); valid once the scan has run."""
    return [
        (int(line), REJECT_REASONS.get(kind, kind.lower()), text)
        for line, kind, text in con.execute(
            """SELECT line, any_value(error_type), any_value(csv_line)
               FROM reject_errors GROUP BY line ORDER BY line"""
        ).fetchall()
    ]


REJECT_REASONS = {"TOO MANY COLUMNS": "too many fields", "MISSING COLUMNS": "too few fields"}


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
            frame_to_sql(con, rows),
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
        got = sorted(data)[:5] if isinstance(data, dict) else type(data).__name__
        raise BadPayload(f"{where}: missing key {key!r} in the answer (got {got}); API changed?")
    return data[key]


def _pair(item: Any, t: int, p: int) -> tuple[Any, Any]:
    """(time, price) from a list item; malformed items become a row the validator rejects."""
    if isinstance(item, list | tuple) and len(item) > max(t, p):
        return item[t], item[p]
    return None, json.dumps(item)[:40]


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def build_source(name: str, settings: Settings, replay_file: Path | None = None) -> PriceSource:
    """The source called ``name`` configured from ``settings``."""
    if name == "coingecko":
        return CoinGecko(settings)
    if name == "coinbase":
        return Coinbase(settings)
    if name == "replay":
        return Replay(settings, replay_file)
    raise SourceError(f"unknown source {name!r}")


def wait_for(settings: Settings) -> Callable[[RetryCallState], float]:
    """Backoff: the server's Retry-After when given, else exponential with full jitter."""
    jitter = wait_random_exponential(multiplier=0.5, max=settings.retry_max_wait_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, settings.retry_max_wait_s)
        return jitter(state)

    return wait


def fetch_with_retries(source: PriceSource, window: Window | None, settings: Settings) -> Batch:
    """``source.fetch`` retried on retryable failures only (the plain runner's retry policy)."""
    retrying = Retrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(settings.http_retries + 1),
        wait=wait_for(settings),
        reraise=True,
        before_sleep=lambda s: log.warning(
            "%s failed (%s); retry %d of %d",
            source.name,
            s.outcome.exception() if s.outcome else "?",
            s.attempt_number,
            settings.http_retries,
        ),
    )
    return retrying(source.fetch, window)


def source_chain(settings: Settings, replay_file: Path | None = None) -> Sequence[PriceSource]:
    """The configured source, then the failover source (live sources only)."""
    chain = [build_source(settings.source, settings, replay_file)]
    if settings.source != "replay" and settings.failover_source not in ("none", settings.source):
        chain.append(build_source(settings.failover_source, settings))
    return chain


def fetch_with_failover(
    settings: Settings, window: Window | None = None, replay_file: Path | None = None
) -> Batch:
    """Try each source of :func:`source_chain` with retries; any source failure fails over."""
    chain = source_chain(settings, replay_file)
    failures: list[str] = []
    for i, source in enumerate(chain):
        try:
            batch = fetch_with_retries(source, window, settings)
        except SourceError as exc:
            if i == len(chain) - 1:
                if failures:
                    raise type(exc)(f"{exc} (after failover from: {'; '.join(failures)})") from None
                raise
            failures.append(str(exc))
            log.warning("%s gave up (%s); failing over to %s", source.name, exc, chain[i + 1].name)
            continue
        batch.notes += [f"failover from {f}" for f in failures]
        return batch
    raise AssertionError("unreachable: the source chain is never empty")
