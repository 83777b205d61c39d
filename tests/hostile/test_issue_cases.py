"""Each case of issue #17 as the user met it: the ``btc`` console script in a real process, one
line on stderr, no traceback, a non-zero exit, and nothing created or changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.csvs import HEADER, rows, with_close, write
from tests.hostile.places import bad_places, full_disk, immutable, tree
from tests.integration.test_cli import btc

pytestmark = pytest.mark.integration


def one_line(result, code: int, message: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("btc: error:") == 1 and result.stderr.endswith("\n")
    last = result.stderr.splitlines()[-1]
    assert last.startswith("btc: error:") and message in last, result.stderr


@pytest.fixture(scope="module")
def good_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("good") / "btc.duckdb"
    assert btc("run", "--db", str(db)).returncode == 0
    return db


def test_a_date_too_far_ahead_is_one_line(tmp_path):
    """It was an OverflowError."""
    result = btc(
        "backfill", "--from", "2023-10-01", "--to", "9999-12-31", "--db", str(tmp_path / "b.duckdb")
    )
    one_line(result, 2, "--to 9999-12-31 is in the future")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("place", ["parent is a file", "under /proc", "immutable folder"])
def test_a_database_where_none_can_be_is_one_line(tmp_path, place):
    db = bad_places(tmp_path)[place] / "btc.duckdb"
    with immutable(tmp_path / "ro"):
        result = btc("run", "--db", str(db))
    one_line(result, 2, f"cannot write the DuckDB file {db} there")


@pytest.mark.parametrize("place", ["parent is a file", "under /proc", "immutable folder"])
def test_an_export_where_none_can_be_is_one_line(good_db, tmp_path, place):
    out = bad_places(tmp_path)[place] / "daily.json"
    with immutable(tmp_path / "ro"):
        result = btc("export", "--db", str(good_db), "--out", str(out))
    one_line(result, 2, f"cannot write {out}")


def test_export_of_a_typo_fails_and_creates_nothing(tmp_path):
    """It created an empty database and printed [] with exit 0."""
    result = btc("export", "--db", str(tmp_path / "typo.duckdb"))
    one_line(result, 1, "no DuckDB file at")
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_reading_commands_work_on_a_good_database_in_a_read_only_folder(good_db, tmp_path):
    """The lock file could not be created, so the export failed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(good_db, folder / "btc.duckdb")
    expected = btc("export", "--db", str(good_db)).stdout
    before = tree(folder)
    with immutable(folder):
        export = btc("export", "--db", str(folder / "btc.duckdb"))
        chart = btc("chart", "--db", str(folder / "btc.duckdb"), "--out", str(tmp_path / "c.png"))
        doctor = btc("doctor", "--db", str(folder / "btc.duckdb"))
        missing = btc("doctor", "--db", str(folder / "none.duckdb"))
    assert export.returncode == 0 and export.stdout == expected, export.stderr
    assert chart.returncode == 0 and (tmp_path / "c.png").stat().st_size > 10_000
    assert "FAIL duckdb: cannot write the DuckDB file" in doctor.stdout  # it says, not crashes
    assert "FAIL duckdb: cannot write the DuckDB file" in missing.stdout
    assert "Traceback" not in doctor.stderr + missing.stderr
    assert tree(folder) == before


def test_doctor_creates_no_database(tmp_path):
    result = btc("doctor", "--db", str(tmp_path / "new" / "btc.duckdb"))
    assert "ok   duckdb: " in result.stdout and "not created yet" in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "backfill"])
def test_the_closing_line_gives_the_rejected_count_without_v(replay_csv, tmp_path, command):
    good = rows(replay_csv, 48)
    good[3], good[40] = with_close(good[3], "x"), with_close(good[40], "-2")
    path = write(tmp_path / "two-bad.csv", good)
    days = ("--from", "2023-10-01", "--to", "2023-10-02") if command == "backfill" else ()
    result = btc(command, *days, "--replay-file", str(path), "--db", str(tmp_path / "c.duckdb"))
    assert result.returncode == 0, result.stderr
    assert "2 rows rejected" in result.stderr.splitlines()[-1]


def test_a_40_mb_line_is_counted_and_its_warning_is_short(replay_csv, tmp_path):
    good = rows(replay_csv, 24)
    good[5] = with_close(good[5], "9" * (40 << 20))
    path = write(tmp_path / "long.csv", good)
    result = btc("run", "--replay-file", str(path), "--db", str(tmp_path / "l.duckdb"))
    assert result.returncode == 0, result.stderr[:500]
    assert "23 observations kept of 24 received (1 rejected" in result.stderr
    assert "line 7: line too long" in result.stderr and len(result.stderr) < 2000


@pytest.mark.parametrize(
    ("replay", "message"),
    [
        ("/dev/zero", "replay file /dev/zero is not a regular file"),
        ("wide-header", "its first line is longer than 64 KiB"),
    ],
)
def test_an_unreadable_replay_file_is_one_line(tmp_path, replay, message):
    """/dev/zero was a MemoryError, a header field over 128 KiB a csv field-limit error."""
    if replay == "wide-header":
        replay = str(tmp_path / "wide.csv")
        Path(replay).write_text(HEADER.replace("date", "d" * (200 << 10)) + "\n1,2\n")
    result = btc("run", "--replay-file", replay, "--db", str(tmp_path / "u.duckdb"))
    one_line(result, 1, message)


def test_a_load_onto_a_full_disk_is_one_line_and_the_database_intact(good_db, shared_csv, tmp_path):
    """Issue #31 row 10: the commit failed on a 2 MB tmpfs, then DuckDB refused the rollback
    ("cannot rollback - no transaction is active") in a traceback."""
    with full_disk(tmp_path / "disk") as disk:
        shutil.copy(good_db, disk / "btc.duckdb")
        before = btc("export", "--db", str(disk / "btc.duckdb")).stdout
        result = btc(
            "backfill", "--replay-file", str(shared_csv), "--from", "2019-11-20",
            "--to", "2023-12-31", "--db", str(disk / "btc.duckdb"), timeout=120,
        )  # fmt: skip
        one_line(result, 1, "No space left on device")
        assert btc("export", "--db", str(disk / "btc.duckdb")).stdout == before


def test_an_export_onto_a_full_disk_is_one_line_and_leaves_no_temporary_file(good_db, tmp_path):
    with full_disk(tmp_path / "disk", size="4k") as disk:
        result = btc("export", "--db", str(good_db), "--out", str(disk / "daily.json"))
        one_line(result, 2, f"cannot write {disk / 'daily.json'}: No space left on device")
        assert list(disk.iterdir()) == []
