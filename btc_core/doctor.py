"""``btc doctor``: check the setup, and give one line of fix for each problem found."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as with_fields

from btc_core.errors import BtcError, StoreBusy
from btc_core.settings import Settings
from btc_core.sources import build_source
from btc_core.store import Store


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text}\n     fix: {self.fix}" if self.fix and not self.ok else text


def check_store(settings: Settings) -> Check:
    """The DuckDB file can be opened for writing and nobody holds it."""
    store = Store(settings.db_path, lock_timeout_s=1.0)
    try:
        with store.connect() as con:
            (n,) = con.execute("SELECT count(*) FROM observations").fetchone()  # type: ignore[misc]
    except StoreBusy as exc:
        return Check(
            "duckdb", False, str(exc), "wait for the running load, or stop the process holding it"
        )
    except (BtcError, OSError) as exc:
        return Check(
            "duckdb", False, str(exc), f"make {settings.db_path.parent} writable or set BTC_DB_PATH"
        )
    return Check("duckdb", True, f"{settings.db_path} writable, {n} observations")


def check_source(settings: Settings) -> Check:
    """The configured source answers with valid data (one request, no retries)."""
    source = build_source(settings.source, with_fields(settings, http_retries=0))
    try:
        batch = source.fetch(None)
    except BtcError as exc:
        fix = (
            "point BTC_REPLAY_FILE at a CSV shaped like shared/data"
            if settings.source == "replay"
            else f"check BTC_{settings.source.upper()}_URL, the network and the API key, or use --source replay"
        )
        return Check(f"source {settings.source}", False, str(exc), fix)
    return Check(f"source {settings.source}", True, batch.summary())


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix things."""
    return [check_store(settings), check_source(settings)]
