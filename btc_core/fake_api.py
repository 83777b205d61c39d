"""A local look-alike of the CoinGecko and Coinbase Exchange APIs that can inject faults.

It serves the real payload shapes from recorded prices, so the live code paths run offline: in
tests, in the demo, in fault drills. Point ``BTC_COINGECKO_URL`` at ``<url>/coingecko`` and
``BTC_COINBASE_URL`` at ``<url>/coinbase``.

    with FakeApi.start(replay_csv) as api:
        api.inject("coingecko", "429", "500")   # the next two CoinGecko answers fail
        ...

Faults (one per request, in order): an HTTP status (``"429"`` carries ``Retry-After: 0``,
``"429:N"`` ``Retry-After: N``),
``"timeout"`` (answers after ``slow_s``), ``"truncated"`` JSON, ``"html"`` error page,
``"missing_key"``, ``"nan"``, ``"zero"``, ``"negative"``, ``"absurd"`` prices, ``"stale"``
timestamp, ``"drop"`` (closes the connection), ``"down"`` (every request fails with 503).

Hostile payloads (:data:`HOSTILE`, one name per fault) spoil *every* row of the answer in one
way, in the API's own shape: prices as booleans, nulls, objects, text, infinities; timestamps
out of range, fractional or in the future. ``"deep"`` answers JSON nested 100,000 levels deep.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb

PROVIDERS = ("coingecko", "coinbase")


@contextmanager
def serving(server: ThreadingHTTPServer, name: str) -> Iterator[str]:
    """Serve ``server`` (bound to 127.0.0.1) in a daemon thread until the block ends; yields its
    URL. It looks for the stop every 50 ms: ``shutdown`` waits up to one interval (the default
    0.5 s, paid by each of the many short-lived servers of the tests and parity runs)."""
    threading.Thread(
        target=partial(server.serve_forever, poll_interval=0.05), name=name, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FakeApi:
    """The server's state: recorded candles, queued faults, and a log of requests."""

    candles: list[tuple[int, float]]
    slow_s: float = 5.0
    latency_s: float = 0.0  # added to every answer: a remote API's round trip, for benchmarks
    faults: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    down: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    @contextmanager
    def start(
        cls, replay_csv: Path, port: int = 0, slow_s: float = 5.0, latency_s: float = 0.0
    ) -> Iterator[FakeApi]:
        """Serve on 127.0.0.1 (a free port unless ``port`` is given) until the block ends."""
        api = cls(load_candles(replay_csv), slow_s=slow_s, latency_s=latency_s)
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(api))
        server.daemon_threads = True
        with serving(server, "fake-api") as api.url:
            yield api

    def inject(self, provider: str, *faults: str) -> None:
        """Queue faults for the next requests to ``provider`` (``"down"`` is permanent)."""
        with self.lock:
            for fault in faults:
                if fault == "down":
                    self.down.add(provider)
                else:
                    self.faults[provider].append(fault)

    def reset(self) -> None:
        """Forget faults and the request log."""
        with self.lock:
            self.faults.clear()
            self.down.clear()
            self.requests.clear()

    def hits(self, provider: str) -> int:
        """How many requests reached ``provider``."""
        return sum(1 for r in self.requests if r["provider"] == provider)

    def _next_fault(self, provider: str) -> str | None:
        with self.lock:
            if provider in self.down:
                return "503"
            queue = self.faults[provider]
            return queue.popleft() if queue else None

    def latest(self) -> tuple[int, float]:
        """The last recorded candle, time-shifted to now so that it is fresh."""
        return int(time.time()) - 60, self.candles[-1][1]

    def between(self, start: int, end: int) -> list[tuple[int, float]]:
        return [c for c in self.candles if start <= c[0] < end]


def load_candles(path: Path) -> list[tuple[int, float]]:
    """(time, close) of a CSV shaped like shared/data, sorted by time."""
    con = duckdb.connect()
    try:
        return con.execute(
            'SELECT "time"::BIGINT, "close"::DOUBLE FROM read_csv(?, header = true) ORDER BY 1',
            [str(path)],
        ).fetchall()
    finally:
        con.close()


def _corrupt(price: float, fault: str | None) -> float:
    return {"nan": float("nan"), "zero": 0.0, "negative": -price, "absurd": price * 1e6}.get(
        fault or "", price
    )


FULLWIDTH = {ord("0") + i: 0xFF10 + i for i in range(10)}  # digits as U+FF10..U+FF19

# Each turns one (epoch seconds, price) row into the (time, price) a broken API might send; the
# time is in seconds here and scaled to the provider's unit (ms for CoinGecko) when it is a number.
HOSTILE: dict[str, Callable[[int, float], tuple[Any, Any]]] = {
    "price_bool": lambda t, p: (t, True),
    "price_null": lambda t, p: (t, None),
    "price_object": lambda t, p: (t, {"usd": p}),
    "price_list": lambda t, p: (t, [p]),
    "price_text": lambda t, p: (t, f"{p:,.2f} USD"),
    "price_fullwidth": lambda t, p: (t, str(int(p)).translate(FULLWIDTH)),
    "price_infinity": lambda t, p: (t, float("inf")),
    "price_huge_text": lambda t, p: (t, "9" * 1_000_000),
    "time_null": lambda t, p: (None, p),
    "time_text": lambda t, p: ("yesterday", p),
    "time_negative": lambda t, p: (-t, p),
    "time_huge": lambda t, p: (10**40, p),
    "time_400_digits": lambda t, p: (10**399, p),
    "time_fraction": lambda t, p: (t + 0.0005, p),
    "time_future": lambda t, p: (4_000_000_000, p),
}
DEEP = b"[" * 100_000 + b"]" * 100_000


def _spoil(rows: list[tuple[int, float]], fault: str | None, scale: int) -> list[tuple[Any, Any]]:
    """``rows`` with a hostile fault applied to each, times scaled to the provider's unit."""
    spoil = HOSTILE.get(fault or "")
    if spoil is None:
        return [(t * scale, p) for t, p in rows]
    spoilt = [spoil(t, p) for t, p in rows]
    return [(t * scale if isinstance(t, int | float) else t, p) for t, p in spoilt]


def _body(api: FakeApi, provider: str, path: str, query: dict[str, str], fault: str | None) -> Any:
    """The JSON a real API would answer, with a data fault applied."""
    if fault in HOSTILE and provider == "coingecko" and path.endswith("simple/price"):
        ((ts, price),) = _spoil([api.latest()], fault, 1)
        return {"bitcoin": {"usd": price, "last_updated_at": ts}}
    if provider == "coingecko" and path.endswith("simple/price"):
        ts, price = api.latest()
        if fault == "stale":
            ts -= 3 * 86400
        coin = {"usd": _corrupt(price, fault), "last_updated_at": ts}
        if fault == "missing_key":
            del coin["usd"]
        return {"bitcoin": coin}
    if provider == "coingecko" and path.endswith("market_chart/range"):
        rows = api.between(int(query["from"]), int(query["to"]))
        prices = [[t, p] for t, p in _spoil(rows, fault, 1000)]
        if prices and fault in ("nan", "zero", "negative", "absurd"):
            prices[0][1] = _corrupt(prices[0][1], fault)
        key = "price_list" if fault == "missing_key" else "prices"
        return {key: prices, "market_caps": [], "total_volumes": []}
    if provider == "coinbase" and path.endswith("candles"):
        start, end = (_iso_epoch(query["start"]), _iso_epoch(query["end"]))
        if end > api.candles[-1][0] + 3600:  # "latest": a candle for the current hour
            now = int(time.time()) // 3600 * 3600
            rows = [(now, api.candles[-1][1])]
        else:
            rows = api.between(start, end)
        if fault in HOSTILE:
            return [[t, 1.0, 1.0, 1.0, p, 1.0] for t, p in reversed(_spoil(rows, fault, 1))]
        candles = [[t, p * 0.99, p * 1.01, p, _corrupt(p, fault), 1.0] for t, p in reversed(rows)]
        return {"message": "moved"} if fault == "missing_key" else candles
    return None


def _iso_epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            provider, _, path = url.path.lstrip("/").partition("/")
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with api.lock:
                api.requests.append(
                    {
                        "provider": provider,
                        "path": path,
                        "query": query,
                        "headers": dict(self.headers),
                    }
                )
            if api.latency_s:
                time.sleep(api.latency_s)
            if provider not in PROVIDERS:
                return self._send(404, b'{"error":"not found"}')
            fault = api._next_fault(provider)
            status, _, retry_after = (fault or "").partition(":")
            if status.isdigit():
                extra = {"Retry-After": retry_after or "0"} if status == "429" else {}
                return self._send(
                    int(status), b'{"status":{"error_code":%s}}' % status.encode(), extra
                )
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return None
            if fault == "timeout":
                time.sleep(api.slow_s)
            if fault == "html":
                page = b"<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
                return self._send(200, page, {"Content-Type": "text/html"})
            if fault == "deep":
                return self._send(200, DEEP)
            body = _body(api, provider, path, query, fault)
            if body is None:
                return self._send(404, b'{"error":"unknown endpoint"}')
            data = json.dumps(body).encode()
            if fault == "truncated":
                data = data[: max(1, len(data) // 2)]
            return self._send(200, data)

        def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            headers = {"Content-Type": "application/json", **(headers or {})}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    return Handler


def main() -> None:
    """``python -m btc_core.fake_api [CSV] [PORT]``: serve until Ctrl-C (for demos)."""
    import sys

    from btc_core.settings import DEFAULT_REPLAY_FILE

    csv = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_REPLAY_FILE
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8765
    with FakeApi.start(csv, port=port) as api:
        print(f"fake CoinGecko at {api.url}/coingecko, Coinbase at {api.url}/coinbase", flush=True)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
