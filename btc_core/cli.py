"""``btc``: the plain runner (no orchestrator). ``btc run | backfill | export | chart | doctor``.

Settings come from ``BTC_*`` variables; options given here override them. Failures print one
line and exit non-zero; ``--debug`` (or ``BTC_DEBUG=1``) shows the traceback.

Each command imports what only it needs (the doctor, the progress bar) when it runs,
so ``btc run`` and ``btc backfill`` start without them (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import NoReturn

from btc_core import __version__
from btc_core.chart import CHART_DAYS, daily_avg_png, last_days  # matplotlib only once drawing
from btc_core.errors import BtcError, ConfigError
from btc_core.exit import skip_exit_collection
from btc_core.files import write_atomically
from btc_core.observations import Window
from btc_core.pipeline import backfill, backfill_chunks, run_cycle, store_for
from btc_core.settings import NOTIFY_CHANNELS, SOURCES, Settings
from btc_core.transform import export

EXIT_FAILURE, EXIT_USAGE, EXIT_NOTIFY = 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other usage error
        self.exit(EXIT_USAGE, f"btc: error: {message} (see btc {self.prog.split()[-1]} --help)\n")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--db", type=Path, help="DuckDB file (BTC_DB_PATH)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    fetching = _Parser(add_help=False)
    fetching.add_argument("--source", choices=SOURCES, help="price source (BTC_SOURCE)")
    fetching.add_argument("--replay-file", type=Path, help="CSV to replay (BTC_REPLAY_FILE)")

    parser = _Parser(prog="btc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"btc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run", parents=[common, fetching], help="one cycle: extract, load, transform, notify"
    )
    run.add_argument("--notify", choices=NOTIFY_CHANNELS, help="channel (BTC_NOTIFY)")
    fill = sub.add_parser("backfill", parents=[common, fetching], help="load whole UTC days")
    fill.add_argument("--from", dest="first", type=_day, required=True, metavar="DATE")
    fill.add_argument("--to", dest="last", type=_day, required=True, metavar="DATE")
    out = sub.add_parser("export", parents=[common], help="write the daily averages as JSON")
    out.add_argument("--out", type=Path, help="file to write (default: stdout)")
    chart = sub.add_parser("chart", parents=[common], help="draw the daily average as a PNG")
    chart.add_argument("--out", type=Path, required=True, help="PNG file to write")
    chart.add_argument(
        "--days", type=int, default=CHART_DAYS, help="how many days up to the newest"
    )
    sub.add_parser(
        "doctor", parents=[common, fetching], help="check the setup, one fix per problem"
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(
        db_path=args.db,
        source=getattr(args, "source", None),
        replay_file=getattr(args, "replay_file", None),
        notify=getattr(args, "notify", None),
    )
    settings.require_secrets()
    return settings


def _run(args: argparse.Namespace, settings: Settings) -> int:
    report = run_cycle(settings)
    print(report.batch.summary(), file=sys.stderr)
    for note in report.batch.notes:
        print(f"note: {note}", file=sys.stderr)
    print(report.load.summary(), file=sys.stderr)
    if report.notify_error:
        print(f"btc: error: {report.notify_error} (the data was loaded)", file=sys.stderr)
        return EXIT_NOTIFY
    return 0


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    window = Window.days(args.first, args.last)
    total = len(backfill_chunks(settings, window))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=not sys.stderr.isatty(), console=None) as progress:
        task = progress.add_task(f"backfill {args.first} .. {args.last}", total=total)
        results = backfill(settings, window, on_chunk=lambda *_: progress.advance(task))
    inserted = sum(r.inserted for r in results)
    updated = sum(r.updated for r in results)
    rejected = sum(r.rejected for r in results)
    print(
        f"backfilled {args.first} .. {args.last} from {settings.source}: "
        f"{inserted} new, {updated} updated observations, {rejected} rows rejected",
        file=sys.stderr,
    )
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    text = export(store_for(settings), args.out)
    if args.out is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _chart(args: argparse.Namespace, settings: Settings) -> int:
    rows = last_days(store_for(settings), args.days)
    write_atomically(args.out, daily_avg_png(rows))
    print(f"wrote {args.out} ({rows[0].day} .. {rows[-1].day})", file=sys.stderr)
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from btc_core.doctor import run_checks

    failed = 0
    for check in run_checks(settings):
        print(check.line())
        failed += not check.ok
    return EXIT_FAILURE if failed else 0


COMMANDS = {
    "run": _run,
    "backfill": _backfill,
    "export": _export,
    "chart": _chart,
    "doctor": _doctor,
}


def main(argv: list[str] | None = None) -> int:
    skip_exit_collection()
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("BTC_DEBUG") == "1"
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="btc: %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = _settings(args)
        return COMMANDS[args.command](args, settings)
    except BtcError as exc:
        if debug:
            raise
        print(f"btc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
    except OSError as exc:  # the system refused something the core did not foresee
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"btc: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("btc: interrupted; nothing half-written (loads are transactional)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
