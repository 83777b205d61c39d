"""Every input line is accounted for (received = kept + rejected + duplicates collapsed),
whatever it holds and however long it is; the policies are said out loud."""

from __future__ import annotations

import logging
import os
from datetime import date

import pytest

from bench.ingest import generate
from btc_core.errors import InputError
from btc_core.observations import Batch, Window
from btc_core.sources import Replay
from tests.csvs import HEADER, rows, with_close, write

RAW = "btc_worker.rejected"  # the worker-side logger of raw rejected rows
SLOW = "reading line by line"  # logged (INFO) when DuckDB's pass fell short


def fetch(settings, path, window=None):
    return Replay(settings, path).fetch(window)


def accounted(batch) -> bool:
    return batch.received == batch.kept + batch.n_rejected + batch.duplicates


def same_rows(a: Batch, b: Batch) -> bool:
    return (a.ts.tolist(), a.price_usd.tolist()) == (b.ts.tolist(), b.price_usd.tolist())


def raw_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == RAW]


@pytest.mark.parametrize("megabytes", [20, 40])
def test_a_huge_line_is_counted_rejected_and_shown_cut(
    settings, replay_csv, tmp_path, caplog, megabytes
):
    """DuckDB dropped a line of ~40 MB without a word and printed all of a 20 MB one."""
    good = rows(replay_csv, 200)
    good[100] = with_close(good[100], "9" * (megabytes << 20))
    batch = fetch(settings, write(tmp_path / "huge.csv", good))
    assert (batch.received, batch.kept, batch.rejected) == (200, 199, {"line too long": 1})
    assert batch.examples == ["file huge.csv line 102: line too long"]
    (shown,) = raw_lines(caplog)
    assert len(shown) < 200 and f"({len(good[100]):,} characters)" in shown


def test_a_non_utf8_byte_deep_in_close_is_one_rejected_row(settings, replay_csv, tmp_path):
    """It used to give DuckDB's 'INTERNAL Error: Attempted to access index 5 ...'."""
    good = rows(replay_csv)
    path = write(tmp_path / "latin.csv", good)
    spoilt = with_close(good[1500], "387X54.05").encode().replace(b"X", b"\xff")
    path.write_bytes(path.read_bytes().replace(good[1500].encode(), spoilt))
    batch = fetch(settings, path)
    assert batch.rejected == {"non-numeric price": 1} and accounted(batch)
    assert batch.examples == ["file latin.csv line 1502: non-numeric price"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (HEADER.replace("date", "d" * (200 << 10)) + "\n", "first line is longer than 64 KiB"),
        (",".join(["x"] * 5000) + ",time,close\n", "5,002 columns in its header"),
        ("time,close,close\n1,2,3\n", "names the column 'close' twice"),
        ("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "has no column close, time"),
    ],
)
def test_an_impossible_header_is_one_line(settings, tmp_path, content, message):
    path = tmp_path / "h.csv"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(InputError, match=message) as err:
        fetch(settings, path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("special", ["/dev/zero", "folder", "fifo"])
def test_something_that_is_not_a_file_is_refused_at_once(settings, tmp_path, special):
    """/dev/zero used to end in a MemoryError."""
    path = {"/dev/zero": "/dev/zero", "folder": tmp_path, "fifo": tmp_path / "pipe"}[special]
    if special == "fifo":
        os.mkfifo(path)
    with pytest.raises(InputError, match="is not a regular file"):
        fetch(settings, path)


def test_blank_lines_are_skipped_and_line_numbers_stay_true(settings, replay_csv, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    good = rows(replay_csv, 10)
    bad = [good[0], with_close(good[1], "x"), *good[2:6], "1,2", *good[6:]]
    plain = fetch(settings, write(tmp_path / "plain.csv", bad))
    assert SLOW not in caplog.text  # DuckDB's pass was whole
    blank = fetch(settings, write(tmp_path / "blank.csv", ["", bad[0], "", *bad[1:], "", ""]))
    assert SLOW in caplog.text  # a blank line inside: read again, line by line
    assert same_rows(blank, plain) and blank.rejected == plain.rejected
    assert plain.examples == [
        "file plain.csv line 3: non-numeric price",
        "file plain.csv line 8: too few fields",
    ]
    assert blank.examples == [
        "file blank.csv line 5: non-numeric price",
        "file blank.csv line 10: too few fields",
    ]
    assert (plain.received, blank.received) == (11, 11)


@pytest.mark.parametrize(
    ("ends", "slow"),
    [(["\r\n"], False), (["\n", "\r\n"], True), (["\r"], True), (["\n", "\r"], True)],
)
def test_any_line_ending_gives_the_same_batch(settings, replay_csv, tmp_path, caplog, ends, slow):
    caplog.set_level(logging.INFO)
    good = rows(replay_csv, 48)
    good[7] = with_close(good[7], "-1")
    reference = fetch(settings, write(tmp_path / "unix.csv", good))
    text = HEADER + ends[0] + "".join(line + ends[i % len(ends)] for i, line in enumerate(good))
    (tmp_path / "other.csv").write_bytes(text.encode())
    caplog.clear()
    batch = fetch(settings, tmp_path / "other.csv")
    assert (SLOW in caplog.text) == slow
    assert same_rows(batch, reference) and batch.rejected == {"non-positive price": 1}
    assert batch.examples == ["file other.csv line 9: non-positive price"]


def test_quotes_are_not_csv_quoting_so_one_stray_quote_costs_one_line(
    settings, replay_csv, tmp_path
):
    """With CSV quoting, an unclosed quote swallowed every line after it into one rejected row."""
    good = rows(replay_csv, 100)
    good[10] = '"' + good[10]
    good[20] = with_close(good[20], '"42000.5"')
    batch = fetch(settings, write(tmp_path / "quotes.csv", good))
    assert batch.rejected == {"non-numeric timestamp": 1, "non-numeric price": 1}
    assert batch.kept == 98 and accounted(batch)


def test_duplicates_say_how_many_had_another_price_and_the_later_line_wins(
    settings, replay_csv, tmp_path
):
    good = rows(replay_csv, 10)
    lines = [*good, good[2], with_close(good[3], "1.25"), with_close(good[3], "2.5")]
    batch = fetch(settings, write(tmp_path / "dups.csv", lines))
    assert (batch.received, batch.kept, batch.duplicates, batch.changed) == (13, 10, 3, 2)
    assert batch.price_usd[3] == 2.5
    assert "3 duplicates collapsed" in batch.summary()
    assert "2 duplicate timestamps had a different price: the later line won" in batch.summary()


def test_a_fractional_second_is_rejected_not_a_second_observation(settings, replay_csv, tmp_path):
    """1704067200.5 next to 1704067200 used to double the hour."""
    good = rows(replay_csv, 3)
    time = good[1].split(",")[0]
    lines = [*good, good[1].replace(time, f"{time}.5", 1), good[2].replace(time, f"{time}.000")]
    batch = fetch(settings, write(tmp_path / "frac.csv", lines))
    assert batch.rejected == {"timestamp not a whole second": 1}
    assert batch.kept == 3 and batch.duplicates == 1  # .000 is the same whole second
    assert accounted(batch)


def test_rows_outside_the_window_are_left_aside_even_bad_ones(settings, replay_csv, tmp_path):
    """A per-day backfill no longer reports a bad row of another day once per day."""
    good = rows(replay_csv, 72)  # 2023-10-01 .. 03
    good[5] = with_close(good[5], "oops")  # 10-01
    good[30] = with_close(good[30], "-3")  # 10-02
    good[60] = "notatime" + good[60][good[60].index(",") :]  # no day at all
    batch = fetch(
        settings, write(tmp_path / "w.csv", good), Window.days(date(2023, 10, 2), date(2023, 10, 2))
    )
    assert batch.rejected == {"non-positive price": 1, "non-numeric timestamp": 1}
    assert (batch.kept, batch.received, batch.outside) == (23, 25, 47)
    assert "47 valid rows outside the window left aside" in batch.summary()


def test_the_raw_examples_stay_in_the_worker_log(settings, replay_csv, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    good = rows(replay_csv, 5)
    good[1] = with_close(good[1], "31337.4242x")
    batch = fetch(settings, write(tmp_path / "m.csv", good))
    assert "31337.4242x" not in " ".join([batch.summary(), *batch.examples])
    forwarded = [r.getMessage() for r in caplog.records if r.name.startswith("btc_core")]
    assert forwarded and not any("31337.4242x" in m for m in forwarded)
    assert any("price='31337.4242x'" in m for m in raw_lines(caplog))


def test_a_big_file_keeps_its_order_so_line_numbers_and_the_later_duplicate_are_right(
    settings, tmp_path
):
    """Read in parallel, rows must stay in file order: the line of a rejected row and the
    duplicate that wins both come from it (a long IN list once made DuckDB reorder them)."""
    path = generate(tmp_path / "big.csv", 400_000)
    lines = path.read_text().splitlines()
    lines[350_000] = with_close(lines[350_000], "oops")  # line 350,001
    lines.append(with_close(lines[1], "12345.5"))  # the first hour again, at the very end
    path.write_text("\n".join(lines) + "\n")
    batch = fetch(settings, path)
    assert batch.examples == ["file big.csv line 350001: non-numeric price"]
    assert (batch.duplicates, batch.changed) == (1, 1)
    assert batch.price_usd[0] == 12345.5 and accounted(batch)
