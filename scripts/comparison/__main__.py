"""``python -m scripts.comparison``: measure (or read saved measurements), then write the page."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from btc_core.settings import PROJECT_ROOT
from scripts.comparison.page import PAGE, PageError, render

SAVED = PROJECT_ROOT / "var" / "comparison" / "measurements.json"


def read_measurements(path: Path) -> dict:
    """Saved measurements; :class:`PageError` with one line if they cannot be read."""
    try:
        measured = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PageError(f"cannot read measurements from {path}: {exc}") from exc
    if not isinstance(measured, dict):
        raise PageError(f"{path} holds no measurements (a JSON object is expected)")
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.comparison",
        description="Measure Prefect, Dagster and Airflow on this pipeline; write the page.",
    )
    parser.add_argument("--out", type=Path, default=PAGE, help="the page (docs/COMPARISON.md)")
    parser.add_argument("--from-json", type=Path, help="write the page from saved measurements")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args(argv)
    try:
        if args.from_json:
            measured = read_measurements(args.from_json)
        else:
            from scripts.comparison.measure import measure

            measured = measure(args.quick)
            SAVED.parent.mkdir(parents=True, exist_ok=True)
            SAVED.write_text(json.dumps(measured, indent=2) + "\n")
            print(f"measurements saved to {SAVED.relative_to(PROJECT_ROOT)}")
        markdown = render(measured)
    except PageError as exc:
        print(f"comparison: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
