"""The page: the measurements turned into named values, rendered with ``page.md.j2``."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from pathlib import Path

import jinja2

from bench.common import cold_floor_ms
from btc_core.settings import PROJECT_ROOT

HERE = Path(__file__).parent
TEMPLATE = "page.md.j2"
PAGE = PROJECT_ROOT / "docs" / "COMPARISON.md"
PORTS = ("Prefect", "Dagster", "Airflow")


class PageError(ValueError):
    """The page cannot be written: measurements it needs are missing, or an image is."""


# --- how numbers read on the page ----------------------------------------------------------------


def seconds(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f} s"


def minutes(value_s: float) -> str:
    """A configured interval in minutes (300 s: 5 min)."""
    return f"{value_s / 60:g} min"


def runs(values: list[float], digits: int = 1) -> str:
    """Each run of a measurement, in order, for the reader to see the spread."""
    return ", ".join(f"{value:,.{digits}f}" for value in values)


def verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "missed"


FILTERS: dict[str, Callable[..., str]] = {
    "ms": "{:,.0f} ms".format,
    "signed_ms": "{:+,.0f} ms".format,
    "seconds": seconds,
    "signed_seconds": "{:+.1f} s".format,
    "interval": "{:g} s".format,  # a configured interval, as set: 2 s, 0.5 s
    "minutes": minutes,
    "times": "{:.1f}x".format,
    "ratio": "{:.2f}x".format,  # a ratio read against a goal or a floor a few hundredths away
    "mib": "{:,.0f} MiB".format,
    "count": "{:,}".format,
    "runs": runs,
    "verdict": verdict,
}

# --- the named values ----------------------------------------------------------------------------


def warm_runs(measured: dict) -> dict[str, dict[str, float]]:
    """Per port, the warm medians (plain core and orchestrated, same run), overhead and ratio."""
    prefect = measured["prefect_cost"]["warm_ms"]
    medians = {
        "Prefect": {"plain_ms": prefect["plain"], "run_ms": prefect["prefect"]},
        "Dagster": measured["warm"]["Dagster"],
        "Airflow": measured["warm"]["Airflow"],
    }
    return {
        port: {
            "plain_ms": run["plain_ms"],
            "run_ms": run["run_ms"],
            "overhead_ms": run["run_ms"] - run["plain_ms"],
            "ratio": run["run_ms"] / run["plain_ms"],
        }
        for port, run in medians.items()
    }


def prefect_values(cost: dict, overhead: dict[str, float]) -> dict:
    """``bench.prefect_cost``'s numbers: the floor, cold ratio, trigger phases, warm path."""
    warm, cold, trigger = cost["warm_ms"], cost["cold_ms"], cost["trigger"]
    phases = [
        {
            **phase,
            "median_s": statistics.median(phase["runs_s"]),
            "floor_median_s": statistics.median(phase["floor_s"]),
        }
        for phase in trigger["phases"]
    ]
    trigger_s = statistics.median(trigger["runs_s"])
    path = cost["warm_path_s"]
    return {
        **{key: cost[key] for key in ("runs", "goals", "imports")},
        "floor_ms": warm["floor"],
        "floor_sync_ms": warm["floor_sync"],
        "over_floor_ms": overhead["Prefect"] - warm["floor"],
        "floor_ratio": overhead["Prefect"] / warm["floor"],
        "heartbeat_join_ms": warm["floor_sync"] - warm["floor"],
        "dagster_ratio": overhead["Prefect"] / overhead["Dagster"],
        "cold": {
            "flow_ms": cold["prefect"],
            "plain_ms": cold["plain"],
            "ratio": cold["prefect"] / cold["plain"],
            "floor_ms": cold["floor"],
            "at_floor_ratio": cold_floor_ms(cold) / cold["plain"],
        },
        "trigger": {
            "poll_s": trigger["poll_s"],
            "runs_s": trigger["runs_s"],
            "median_s": trigger_s,
            "floor_s": statistics.median(trigger["floor_runs_s"]),
            "phases": phases,
            "lag_s": statistics.median(trigger["observed_lag_s"]),
        },
        "warm_path": {
            "api_s": statistics.median(path["api"]),
            "api_runs_s": path["api"],
            "api_result_s": statistics.median(path["api_result"]),
            "event_s": statistics.median(path["event"]),
            "event_runs_s": path["event"],
        },
    }


def cold_values(cold: dict) -> dict:
    """Cold medians per path and over the plain one; whether every round's outputs agreed."""
    median_s = {path: statistics.median(took) for path, took in cold["times"].items()}
    return {
        "median_s": median_s,
        "over_plain_s": {path: took - median_s["plain"] for path, took in median_s.items()},
        "identical": all(cold["identical"]),
        "days": cold["days"],
    }


def backend_values(backends: dict) -> dict:
    """Both backends' numbers, with the 503 answers of each summed, and the task-flow ratio."""
    values: dict = {
        name: {**parts, "retried": sum(part["retried_requests"] for part in parts.values())}
        for name, parts in backends.items()
    }
    sqlite, postgres = backends["sqlite"]["many_tasks"], backends["postgres"]["many_tasks"]
    values["tasks_ratio"] = postgres["flow_median_s"] / sqlite["flow_median_s"]
    values["not_completed"] = sum(
        parts["many_tasks"]["task_runs_not_completed"] + parts["many_tasks"]["flows_not_completed"]
        for parts in backends.values()
    )
    return values


def loc_values(loc: dict) -> dict:
    """Lines per file (ports, around them, tests), each port's total, and the core's."""
    return {
        **loc,
        "totals": {port: sum(loc["ports"][port].values()) for port in PORTS},
        "core_lines": sum(loc["core"].values()),
        "core_files": len(loc["core"]),
    }


# what the template reads as it was measured, under the same name
AS_MEASURED = (
    "quick",
    "effort",
    "bytecode_was_disabled",
    "machine",
    "project",
    "prefect_server_has_assets",
)


def named_values(measured: dict) -> dict:
    """Everything the template says, by name, computed once from the measurements."""
    warm = warm_runs(measured)
    overhead = {port: run["overhead_ms"] for port, run in warm.items()}
    loc = loc_values(measured["loc"])
    environments = measured["environments"]
    return {
        **{key: measured[key] for key in AS_MEASURED},
        "step_seconds": measured["seconds"],
        "measuring_minutes": sum(measured["seconds"].values()) / 60,
        "versions": measured["machine"]["versions"],
        "loc": loc,
        "environments": environments,
        "warm": warm,
        "overhead": overhead,
        "plain_warm_ms": statistics.median(run["plain_ms"] for run in warm.values()),
        "cheapest": min(PORTS, key=overhead.__getitem__),
        "dearest": max(PORTS, key=overhead.__getitem__),
        "largest_port": max(PORTS, key=loc["totals"].__getitem__),
        "largest_install": max(PORTS, key=lambda port: environments[port]["size_mib"]),
        "prefect": prefect_values(measured["prefect_cost"], overhead),
        "cold": cold_values(measured["cold"]),
        "backends": backend_values(measured["backends"]),
    }


# --- rendering -----------------------------------------------------------------------------------


def template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML
    )
    environment.filters.update(FILTERS)
    return environment.get_template(TEMPLATE)


def missing_images(markdown: str, folder: Path) -> list[str]:
    """The images the page links (relative to ``folder``) that do not exist."""
    linked = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)
    return [path for path in linked if not (folder / path).is_file()]


def unfit(detail: str) -> str:
    return f"the measurements do not fit this page ({detail}): measure again (no --from-json)"


def render(measurements: dict, images: Path = PAGE.parent) -> str:
    """The page for ``measurements``; :class:`PageError` if it cannot be written from them or
    an image it links is missing from ``images`` (the folder the page's links start from)."""
    try:
        markdown = template().render(named_values(measurements))
    except KeyError as exc:
        raise PageError(unfit(f"no {exc}")) from exc
    except jinja2.UndefinedError as exc:
        raise PageError(unfit(str(exc))) from exc
    missing = missing_images(markdown, images)
    if missing:
        raise PageError(f"docs/{missing[0]} is missing: run make screenshots")
    return markdown
