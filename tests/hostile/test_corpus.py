"""A corpus of hostile inputs (files, dates, paths, environment values, API payloads from the
fake API), each run through ``btc`` (its ``main``, in this process, with the environment and the
arguments a user would give): no traceback, one ``btc: error:`` line when it fails, every line
accounted for when it loads, and the good database's content unchanged (checksum before/after).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from btc_core.cli import main
from btc_core.fake_api import HOSTILE, FakeApi
from btc_core.store import COLUMNS, SCHEMA
from tests.csvs import HEADER, rows, with_close
from tests.hostile.places import immutable

Build = Callable[[Path, list[str]], object]  # writes the hostile input under tmp, from good rows


@dataclass(frozen=True)
class Case:
    """One hostile input: the arguments (``{good}`` the good database, ``{tmp}`` a scratch
    folder, ``{file}`` what ``build`` made), the environment, and whether ``btc`` must fail."""

    name: str
    argv: tuple[str, ...]
    fails: bool = True
    env: dict[str, str] = field(default_factory=dict)
    build: Build | None = None
    inject: str = ""  # a fake API fault for the next request
    made: str = ""  # a file under {tmp} the case must leave as a regular file


def text(content: str | bytes) -> Build:
    data = content.encode("latin-1") if isinstance(content, str) else content
    return lambda tmp, good: (tmp / "in.csv").write_bytes(data)


def lines(make: Callable[[list[str]], list[str]], header: str = HEADER, end: str = "\n") -> Build:
    return lambda tmp, good: (tmp / "in.csv").write_bytes(
        (end.join([header, *make(good)]) + end).encode("latin-1", "replace")
    )


def closes(value: str, n: int = 24) -> Build:
    return lines(lambda good: [with_close(r, value) for r in good[:n]])


def times(value: str, n: int = 24) -> Build:
    return lines(lambda good: [value + r[r.index(",") :] for r in good[:n]])


def link(target: str, name: str = "in.csv") -> Build:
    return lambda tmp, good: (tmp / name).symlink_to(target)


def fifo(name: str = "in.csv") -> Build:
    return lambda tmp, good: os.mkfifo(tmp / name)


def fifo_link(name: str) -> Build:
    """A FIFO ``f`` and a symlink to it at ``name``."""
    return lambda tmp, good: os.mkfifo(tmp / "f") or (tmp / name).symlink_to(tmp / "f")


def socket_at(name: str) -> Build:
    def bind(tmp: Path, good: list[str]) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(tmp / name))

    return bind


def victim(name: str) -> Build:
    """A file ``victim`` and a symlink to it at ``name``, where a writer might write."""

    def plant(tmp: Path, good: list[str]) -> None:
        (tmp / "victim").write_text("victim\n")
        (tmp / name).symlink_to(tmp / "victim")

    return plant


def cmd(line: str) -> tuple[str, ...]:
    return tuple(line.split())


RUN = cmd("run --db {good} --replay-file {file}")
# Every row of the file has this close, or this time: each file fails as a whole.
BAD_CLOSES = {
    "non-numeric": "abc",
    "NaN": "NaN",
    "negative": "-42000.5",
    "zero": "0",
    "implausible": "1e12",
    "overflowing": "1e400",
    "thousands-separated": '"42,000.50"',
}
BAD_TIMES = {
    "with fractional seconds": "1696118400.5",
    "in the future": "4000000000",
    "after 2100": "99999999999999999999999",
    "negative": "-1696118400",
    "in exponent form": "1.6961184e9",
    "as text": "2023-10-01T00:00:00Z",
}
FILES = [
    Case("empty file", RUN, build=text("")),
    Case("header only", RUN, build=text(HEADER + "\n")),
    Case("header without newline", RUN, build=text(HEADER)),
    Case("no header", RUN, build=lines(lambda g: g[:24], header="")),
    Case("binary garbage", RUN, build=text(bytes(range(256)) * 64)),
    Case("a PNG", RUN, build=text(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + b"\0" * 500)),
    Case("UTF-16 text", RUN, build=lambda t, g: (t / "in.csv").write_text("\n".join([HEADER, *g[:24]]), "utf-16")),
    Case("UTF-8 BOM, good rows", RUN, False, build=lambda t, g: (t / "in.csv").write_bytes(b"\xef\xbb\xbf" + "\n".join([HEADER, *g[:24]]).encode())),
    Case("non-UTF-8 byte in close", RUN, False, build=lines(lambda g: [*g[:23], with_close(g[23], "4\xff2")])),
    Case("a 40 MB line", RUN, False, build=lines(lambda g: [*g[:5], with_close(g[5], "9" * (40 << 20)), *g[6:24]])),
    Case("a header field over 128 KiB", RUN, build=text(HEADER.replace("date", "d" * (200 << 10)) + "\n1,2\n")),
    Case("5,000 columns", RUN, build=text(",".join(["c"] * 5000) + ",time,close\n")),
    Case("close named twice", RUN, build=lines(lambda g: g[:3], header=HEADER + ",close")),
    *(Case(f"{what} prices", RUN, build=closes(close)) for what, close in BAD_CLOSES.items()),
    *(Case(f"timestamps {what}", RUN, build=times(time)) for what, time in BAD_TIMES.items()),
    Case("an unclosed quote", RUN, False, build=lines(lambda g: [g[0], '"' + g[1], *g[2:24]])),
    Case("too many fields", RUN, build=lines(lambda g: [r + ",x" for r in g[:24]])),
    Case("too few fields", RUN, build=lines(lambda g: [r.rsplit(",", 2)[0] for r in g[:24]])),
    Case("blank lines everywhere", RUN, False, build=lines(lambda g: [x for r in g[:24] for x in ("", r, "  ")])),
    Case("CRLF", RUN, False, build=lines(lambda g: g[:24], end="\r\n")),
    Case("lone CR", RUN, False, build=lines(lambda g: g[:24], end="\r")),
    Case("mixed line ends", RUN, False, build=lambda t, g: (t / "in.csv").write_bytes("\r\n".join([HEADER, *g[:12]]).encode() + b"\n" + "\r".join(g[12:24]).encode())),
    Case("NUL bytes", RUN, False, build=lines(lambda g: [*g[:23], with_close(g[23], "4\x002")])),
    Case("tabs around values", RUN, build=closes("\t42000.5\t")),
    Case("100,000 lines of garbage", RUN, build=lines(lambda g: ["garbage,line"] * 100_000)),
    Case("a bad price, then the good line", RUN, False, build=lines(lambda g: [with_close(g[0], "1.5"), *g[:24]])),
    Case("good rows shuffled", RUN, False, build=lines(lambda g: list(reversed(g[:48])))),
    Case("/dev/zero", cmd("run --db {good} --replay-file /dev/zero")),
    Case("/dev/null", cmd("run --db {good} --replay-file /dev/null")),
    Case("a folder", cmd("run --db {good} --replay-file {tmp}")),
    Case("a FIFO", RUN, build=fifo()),
    Case("a missing file", cmd("run --db {good} --replay-file {tmp}/missing.csv")),
    Case("a symlink loop", RUN, build=lambda t, g: (t / "loop").symlink_to(t / "in.csv") or (t / "in.csv").symlink_to(t / "loop")),
    Case("a dangling symlink", RUN, build=link("/nonexistent/btc.csv")),
    Case("a name too long", (*RUN[:-1], "{tmp}/" + "n" * 5000)),
    Case("quotes and a newline in the name", (*RUN[:-1], "{tmp}/it's\n\"odd\".csv"), False, build=lambda t, g: (t / "it's\n\"odd\".csv").write_text("\n".join([HEADER, *g[:24]]) + "\n")),
]  # fmt: skip


def backfill(first: str, last: str, *more: str) -> tuple[str, ...]:
    return ("backfill", "--db", "{good}", "--from", first, "--to", last, *more)


DATES = [
    Case("--to 9999-12-31", backfill("2023-10-01", "9999-12-31")),
    Case("before 1970", backfill("0001-01-01", "0001-01-02")),
    Case("month 13", backfill("2023-13-01", "2023-12-31")),
    Case("February 30", backfill("2023-02-30", "2023-03-01")),
    Case("--to before --from", backfill("2023-12-31", "2023-12-01")),
    Case("an empty date", backfill("", "2023-12-01")),
    Case("a five-digit year", backfill("2023-10-01", "99999-01-01")),
    Case("a date and time", backfill("2023-10-01T00:00", "2023-10-02")),
    Case("a date with a space", backfill(" 2023-10-01", "2023-10-02")),
]

PATHS = [
    Case("run: a file as parent", cmd("run --db {tmp}/a-file/btc.duckdb")),
    Case("run: under /proc", cmd("run --db /proc/btc-hostile/btc.duckdb")),
    Case("run: an immutable folder", cmd("run --db {tmp}/ro/btc.duckdb")),
    Case("run: a folder as database", cmd("run --db {tmp}")),
    Case("run: a CSV as database", cmd("run --db {file}"), build=text(HEADER + "\n")),
    Case("export: a typo", cmd("export --db {tmp}/typo.duckdb")),
    Case("export: a folder", cmd("export --db {tmp}")),
    Case("export: a CSV as database", cmd("export --db {file}"), build=text(HEADER + "\n")),
    Case("export: a DuckDB file of another program", cmd("export --db {file}"), build=lambda t, g: duckdb.connect(str(t / "in.csv")).close()),
    Case("export --out: a file as parent", cmd("export --db {good} --out {tmp}/a-file/x.json")),
    Case("export --out: under /proc", cmd("export --db {good} --out /proc/btc-hostile/x.json")),
    Case("export --out: an immutable folder", cmd("export --db {good} --out {tmp}/ro/x.json")),
    Case("export --out: a folder", cmd("export --db {good} --out {tmp}")),
    Case("chart --out: under /proc", cmd("chart --db {good} --out /proc/btc-hostile/c.png")),
    Case("chart --days 0", cmd("chart --db {good} --out {tmp}/c.png --days 0")),
    Case("chart --days -5", cmd("chart --db {good} --out {tmp}/c.png --days -5")),
    Case("chart --days 10**9", cmd("chart --db {good} --out {tmp}/c.png --days 1000000000"), False),
    Case("chart --days not a number", cmd("chart --db {good} --out {tmp}/c.png --days many")),
]  # fmt: skip

# Every file btc writes or opens (issue #31, rows 6-8 and 14): nothing written into a FIFO, over
# a device or through a planted symlink, no lock file beside a device, no hang on a FIFO.
DB = "{tmp}/x.duckdb"
WRITES = [
    *(
        Case(f"{command}: a {kind} as database", (*cmd(f"{command} --db {DB}"), *more), build=make)
        for command, more in [("run", ()), ("backfill", ("--from", "2023-10-01", "--to", "2023-10-02")), ("export", ())]
        for kind, make in [("FIFO", fifo("x.duckdb")), ("socket", socket_at("x.duckdb")), ("symlink to a FIFO", fifo_link("x.duckdb"))]
    ),
    *(Case(f"{command}: {device} as database", cmd(f"{command} --db {device}")) for command in ("run", "export") for device in ("/dev/null", "/dev/full")),
    Case("run: a symlink to /dev/null as database", cmd(f"run --db {DB}"), build=link("/dev/null", "x.duckdb")),
    Case("run: a symlink planted at the lock file's name", cmd(f"run --db {DB}"), build=victim("x.duckdb.lock")),
    *(
        Case(f"{command} --out: {what}", cmd(f"{command} --db {{good}} --out {out}"), build=make)
        for command in ("export", "chart")
        for what, out, make in [
            ("a FIFO", "{tmp}/out", fifo("out")),
            ("a socket", "{tmp}/out", socket_at("out")),
            ("a symlink to a FIFO", "{tmp}/out", fifo_link("out")),
            ("/dev/full", "/dev/full", None),
            ("/dev/null", "/dev/null", None),
        ]
    ),
    Case("export --out: a symlink planted at the old temp name", cmd("export --db {good} --out {tmp}/daily.json"), False, build=victim(".daily.json.tmp"), made="daily.json"),
    Case("export --out: a symlink to a file of someone else", cmd("export --db {good} --out {tmp}/daily.json"), False, build=victim("daily.json"), made="daily.json"),
    Case("chart --out: a symlink planted at the old temp name", cmd("chart --db {good} --out {tmp}/c.png"), False, build=victim(".c.png.tmp"), made="c.png"),
    *(
        Case(f"run --notify file: {what}", cmd("run --db {good}"), env={"BTC_NOTIFY": "file", "BTC_NOTIFY_FILE": path}, build=make)
        for what, path, make in [
            ("a FIFO", "{tmp}/n.jsonl", fifo("n.jsonl")),
            ("a symlink to someone's file", "{tmp}/n.jsonl", victim("n.jsonl")),
            ("a folder", "{tmp}", None),
            ("/dev/full", "/dev/full", None),
            ("/dev/null", "/dev/null", None),
        ]
    ),
    Case("chart --out: a name without .png", cmd("chart --db {good} --out {tmp}/chart"), False, made="chart"),
    Case("chart --out: a name with another suffix", cmd("chart --db {good} --out {tmp}/chart.v2"), False, made="chart.v2"),
]  # fmt: skip

# A database changed by another program (issue #31, row 11): one line, nothing written to it.
SEED = """
INSERT INTO observations VALUES ('2023-10-01 00:00', 27000, 'replay', '2023-10-02 00:00');
INSERT INTO daily_avg VALUES ('2023-10-01', 27000, 1), ('2023-10-02', 28000, 1);
"""
TAMPERED = {
    "daily_avg holding NaN": "UPDATE daily_avg SET avg_price_usd = 'NaN' WHERE n_obs = 1",
    "daily_avg holding infinity": "UPDATE daily_avg SET avg_price_usd = '-inf' WHERE day = '2023-10-02'",
    "daily_avg holding a negative average": "UPDATE daily_avg SET avg_price_usd = -1 WHERE day = '2023-10-01'",
    "daily_avg holding zero observations": "UPDATE daily_avg SET n_obs = 0",
    "a VARCHAR day column": "ALTER TABLE daily_avg ALTER day TYPE VARCHAR",
    "a VARCHAR day holding text": "ALTER TABLE daily_avg ALTER day TYPE VARCHAR; UPDATE daily_avg SET day = 'yesterday'",
    "a VARCHAR price column": "ALTER TABLE daily_avg ALTER avg_price_usd TYPE VARCHAR",
    "observations without a column": "ALTER TABLE observations DROP ingested_at",
    "an extra column in loads": "ALTER TABLE loads ADD extra INTEGER",
    "another program's tables": "DROP TABLE observations; DROP TABLE daily_avg; DROP TABLE loads; CREATE TABLE customers (id INTEGER)",
}
SCHEMA_CHANGES = [
    name for name, sql in TAMPERED.items() if "UPDATE daily_avg SET" not in sql or "VARCHAR" in sql
]


def tampered(change: str) -> Build:
    def make(tmp: Path, good: list[str]) -> None:
        with duckdb.connect(str(tmp / "x.duckdb")) as con:
            con.execute(SCHEMA + SEED + change)

    return make


FOREIGN = [
    *(Case(f"export: {name}", cmd(f"export --db {DB}"), build=tampered(sql)) for name, sql in TAMPERED.items()),
    *(Case(f"chart: {name}", cmd(f"chart --db {DB} --out {{tmp}}/c.png"), build=tampered(sql)) for name, sql in TAMPERED.items()),
    *(Case(f"run: {name}", cmd(f"run --db {DB}"), build=tampered(TAMPERED[name])) for name in SCHEMA_CHANGES),
]  # fmt: skip

ENV = [
    Case(f"{name}={value!r}", cmd(command), env={name: value})
    for name, value, command in [
        ("BTC_LOCK_TIMEOUT_S", "x", "export --db {good}"),
        ("BTC_LOCK_TIMEOUT_S", "-1", "export --db {good}"),
        ("BTC_SOURCE", "kraken", "run --db {good}"),
        ("BTC_FAILOVER_SOURCE", "ftp", "run --db {good}"),
        ("BTC_HTTP_RETRIES", "many", "run --db {good}"),
        ("BTC_EXTRACT_CACHE_S", "0", "run --db {good}"),
        ("BTC_MAX_PRICE_USD", "0", "run --db {good}"),
        ("BTC_ARTIFACTS", "everything", "run --db {good}"),
        ("BTC_STORE_URL", "postgres://x", "export --db {good}"),
        ("BTC_STORE_URL", "ducklake:postgres:host=x", "export --db {good}"),
        ("BTC_NOTIFY", "webhook", "run --db {good}"),
        ("BTC_REPLAY_FILE", "/dev/zero", "run --db {good}"),
        ("BTC_DB_PATH", "/proc/btc-hostile/btc.duckdb", "export"),
        ("BTC_COINGECKO_KEY_KIND", "enterprise", "run --db {good}"),
        ("BTC_DASK_WORKERS", "0", "run --db {good}"),
    ]
] + [
    Case("BTC_CHART=inline with summary artifacts", cmd("run --db {good}"), env={"BTC_CHART": "inline", "BTC_ARTIFACTS": "summary"}),
]  # fmt: skip

LIVE = {
    "BTC_COINGECKO_URL": "{api}/coingecko",
    "BTC_COINBASE_URL": "{api}/coinbase",
    "BTC_FAILOVER_SOURCE": "none",
    "BTC_HTTP_RETRIES": "0",
    "BTC_READ_TIMEOUT_S": "1",
}
ONE_BAD_ROW = ("nan", "zero", "negative", "absurd")  # in a range, these spoil the first row only
PAYLOAD_FAULTS = [*HOSTILE, "truncated", "html", "missing_key", "nan", "zero", "negative", "absurd"]
PAYLOADS = [
    Case(f"coingecko latest: {fault}", cmd("run --db {good} --source coingecko"), env=LIVE, inject=fault)
    for fault in [*PAYLOAD_FAULTS, "stale"]
] + [
    Case(f"coingecko range: {fault}", backfill("2023-10-01", "2023-10-02", "--source", "coingecko"), fault not in ONE_BAD_ROW, LIVE, inject=fault)
    for fault in PAYLOAD_FAULTS
] + [
    Case(f"coinbase range: {fault}", backfill("2023-10-01", "2023-10-02", "--source", "coinbase"), env=LIVE, inject=fault)
    for fault in ["price_text", "time_fraction", "time_huge", "price_null", "missing_key"]
] + [
    Case(f"coinbase latest: {fault}", cmd("run --db {good} --source coinbase"), env=LIVE, inject=fault)
    for fault in ["time_400_digits", "time_huge", "time_text", "price_text"]
] + [
    Case("coingecko latest: JSON 100,000 levels deep", cmd("run --db {good} --source coingecko"), env=LIVE, inject="deep"),
]  # fmt: skip

CORPUS = FILES + DATES + PATHS + WRITES + FOREIGN + ENV + PAYLOADS


def case_id(case: Case | object) -> str:
    return re.sub(r"\W+", "-", getattr(case, "name", "case")).strip("-")[:60]


def content(db: Path) -> str:
    """A checksum of everything the database holds (every row of both tables)."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows_ = [
            con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("observations", "daily_avg")
        ]
    return hashlib.sha256(repr(rows_).encode()).hexdigest()


@pytest.fixture(scope="module")
def good_db(tmp_path_factory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("good") / "btc.duckdb"
    assert main(["run", "--db", str(db), "--notify", "none"]) == 0
    return db, content(db)


def planted(tmp: Path) -> dict[str, object]:
    """What must stay as it was under ``tmp``: every symlink (its target), FIFO and socket, and
    the bytes of ``victim``; and the lock files that must never appear beside a device."""
    found: dict[str, object] = {
        device: (stat.S_IFMT(os.stat(device).st_mode), Path(f"{device}.lock").exists())
        for device in ("/dev/null", "/dev/full")
    }
    for path in tmp.rglob("*"):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            found[str(path)] = os.readlink(path)
        elif not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            found[str(path)] = stat.S_IFMT(mode)
    if (tmp / "victim").is_file():
        found["victim"] = (tmp / "victim").read_bytes()
    if (tmp / "x.duckdb").is_file():  # a database btc must not touch: its tables and rows
        with duckdb.connect(str(tmp / "x.duckdb"), read_only=True) as con:
            tables = con.execute(COLUMNS).fetchall()
            rows_ = [con.execute(f"FROM {t} ORDER BY ALL").fetchall() for t, _ in tables]
        found["x.duckdb"] = repr((tables, rows_))  # repr: a NaN equals itself
    return found


@pytest.mark.timeout(120)  # a case that hangs (a FIFO opened as a file) fails, not the session
@pytest.mark.parametrize("case", CORPUS, ids=case_id)
def test_a_hostile_input_is_one_line_and_changes_nothing(
    case: Case, good_db, replay_csv, tmp_path, fake_api: FakeApi, monkeypatch, capsys
):
    db, checksum = good_db
    for name in [n for n in os.environ if n.startswith("BTC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BTC_NOTIFY", "none")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(api=fake_api.url, tmp=tmp_path))
    (tmp_path / "ro").mkdir()
    (tmp_path / "a-file").write_text("not a folder\n")
    if case.build:
        case.build(tmp_path, rows(replay_csv))
    if case.inject:
        fake_api.inject("coingecko", case.inject)
        fake_api.inject("coinbase", case.inject)
    argv = [a.format(good=db, tmp=tmp_path, file=tmp_path / "in.csv") for a in case.argv]
    before = planted(tmp_path)
    with immutable(tmp_path / "ro"):
        try:
            code = main(argv)
        except SystemExit as usage:  # argparse's own one-line errors exit 2
            code = usage.code
    out, err = capsys.readouterr()
    assert isinstance(code, int) and "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("btc: error:")]
    if case.fails:
        assert code != 0 and errors == [err.splitlines()[-1]], err
        assert len(errors[0]) < 300 + max(map(len, argv)), "one readable line"
    else:
        assert code == 0 and not errors, err
        _accounted(argv[0], err)
    assert content(db) == checksum
    after = planted(tmp_path)
    if case.made:  # the target itself (a symlink, say) is replaced, never written through
        assert stat.S_ISREG((tmp_path / case.made).lstat().st_mode), "written where it was told"
        before.pop(str(tmp_path / case.made), None)
    assert after == before, "nothing written into a FIFO, a device or a symlink"


def _accounted(command: str, err: str) -> None:
    """A run or backfill that succeeded printed its closing line, and a run's numbers add up:
    received = kept + rejected + duplicates (export and chart say nothing of rows)."""
    found = re.search(r"(\d+) observations kept of (\d+) received \((\d+) rejected, (\d+) dup", err)
    closing = {"run": found, "backfill": re.search(r"^backfilled .+ rows rejected$", err, re.M)}
    assert closing.get(command, True), f"no closing line:\n{err}"
    if found:
        kept, received, rejected, duplicates = map(int, found.groups())
        assert received == kept + rejected + duplicates, err


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 50
