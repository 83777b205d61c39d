"""``btc doctor``: check the setup, and give one line of fix for each problem found."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from btc_core.errors import BtcError, StoreBusy
from btc_core.settings import Settings
from btc_core.sources import build_source
from btc_core.sql import one_row
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
    """The store can be opened for writing and nobody holds it (local file), or the DuckLake's
    catalog and data path answer (``BTC_STORE_URL``)."""
    if settings.store_url.get_secret_value():
        return _check_lake(settings)
    store = Store(settings.db_path, lock_timeout_s=1.0)
    try:
        store.check_writable()  # creates nothing: a reading command never makes a database
        if not settings.db_path.exists():
            return Check("duckdb", True, f"{settings.db_path} not created yet, its folder writable")
        with store.read() as con:
            (n,) = one_row(con, "SELECT count(*) FROM observations")
    except StoreBusy as exc:
        return Check(
            "duckdb", False, str(exc), "wait for the running load, or stop the process holding it"
        )
    except (BtcError, OSError) as exc:
        return Check(
            "duckdb", False, str(exc), f"make {settings.db_path.parent} writable or set BTC_DB_PATH"
        )
    return Check("duckdb", True, f"{settings.db_path} writable, {n} observations")


def _check_lake(settings: Settings) -> Check:
    from btc_core.pipeline import store_for  # the pipeline imports this module's neighbours

    store = store_for(settings.replace(lock_timeout_s=1.0))
    try:
        with store.connect() as con:
            (n,) = one_row(con, "SELECT count(*) FROM observations")
    except (BtcError, OSError) as exc:
        return Check(
            "ducklake",
            False,
            str(exc),
            "check the catalog database of BTC_STORE_URL, BTC_LAKE_DATA_PATH, "
            "BTC_S3_ENDPOINT_URL and the AWS keys on this host (docs/ducklake.md)",
        )
    return Check("ducklake", True, f"{store.describe()} reachable, {n} observations")


def check_source(settings: Settings) -> Check:
    """The configured source answers with valid data (one request, no retries)."""
    source = build_source(settings.source, settings)
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


def plugin_checks() -> list[Check]:
    """Checks of the orchestrators installed here, found through the ``btc.doctor`` entry point
    (this project registers the Prefect side: ``deployments.doctor:prefect_checks``)."""
    checks = []
    for plugin in entry_points(group="btc.doctor"):
        try:
            run = plugin.load()
        except ImportError as exc:
            checks.append(Check(plugin.name, True, f"skipped: {exc.name} is not installed here"))
            continue
        checks += run()
    return checks


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix things."""
    return [check_store(settings), check_source(settings), *plugin_checks()]
