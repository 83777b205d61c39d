import logging
from datetime import UTC, date, datetime, timedelta

import pytest

from btc_core.errors import ConfigError, InputError
from btc_core.observations import Window
from btc_core.sources import Replay
from tests.csvs import rows, with_close, write


def fetch(settings, path, window=None):
    return Replay(settings, path).fetch(window)


def test_the_real_slice_is_clean(settings, replay_csv):
    batch = fetch(settings, replay_csv)
    assert (batch.received, batch.kept, batch.n_rejected, batch.duplicates) == (
        2208,
        2208,
        0,
        0,
    )
    assert (batch.ts[1:] > batch.ts[:-1]).all()
    assert str(batch.ts.dtype) == "datetime64[us]"
    assert batch.first_day == date(2023, 10, 1) and batch.last_day == date(2023, 12, 31)


def test_bad_rows_are_rejected_with_reason_and_line(settings, replay_csv, tmp_path, caplog):
    good = rows(replay_csv, 10)
    lines = [
        good[0],
        with_close(good[1], "abc"),
        with_close(good[2], "-5"),
        with_close(good[3], "0"),
        with_close(good[4], "nan"),
        with_close(good[5], ""),
        "notatime" + good[6][good[6].index(",") :],
        f"{int(datetime.now(UTC).timestamp()) + 7200},2099-01-01,0,1,1,100,1,1,1",
        with_close(good[7], "99999999999"),
        good[8],
        good[9].rsplit(",", 5)[0],  # truncated last line: no close column
    ]
    batch = fetch(settings, write(tmp_path / "bad.csv", lines))
    assert batch.kept == 2
    assert batch.rejected == {
        "non-numeric price": 1,
        "non-positive price": 2,
        "non-finite price": 1,
        "missing price": 1,
        "too few fields": 1,
        "non-numeric timestamp": 1,
        "timestamp in the future": 1,
        "implausible price": 1,
    }
    assert batch.examples[0] == "file bad.csv line 3: non-numeric price"  # no value from the data
    raw = [r.getMessage() for r in caplog.records if r.name == "btc_worker.rejected"]
    assert (
        raw[0]
        == f"file bad.csv line 3: non-numeric price (time='{good[1].split(',')[0]}', price='abc')"
    )


def test_rows_with_too_many_fields_are_skipped_and_lines_stay_right(settings, replay_csv, tmp_path):
    good = rows(replay_csv, 6)
    lines = [
        good[0],
        with_close(good[1], "12,5"),
        good[2],
        with_close(good[3], "-1"),
        good[4],
        good[5],
    ]
    batch = fetch(settings, write(tmp_path / "wide.csv", lines))
    assert batch.rejected == {"too many fields": 1, "non-positive price": 1} and batch.kept == 4
    assert batch.examples == [
        "file wide.csv line 3: too many fields",
        "file wide.csv line 5: non-positive price",
    ]
    assert batch.log_lines() == [  # what every orchestrator logs: no value from the data
        (logging.INFO, batch.summary()),
        (logging.WARNING, "rejected file wide.csv line 3: too many fields"),
        (logging.WARNING, "rejected file wide.csv line 5: non-positive price"),
    ]


@pytest.mark.parametrize("end", ["\n", "\r\n", ""], ids=["lf", "crlf", "no-end"])
def test_a_line_ending_in_a_comma_has_one_field_too_many(settings, tmp_path, end):
    """DuckDB's reader takes ``6,`` for a trailing delimiter and drops the empty field; the
    format counts it (the property test found ``time,close\\n1574208000,0.01,\\n`` kept)."""
    path = tmp_path / "comma.csv"
    path.write_bytes(f"time,close\n1696118400,5\n1696122000,6,{end}".encode())
    batch = fetch(settings, path)
    assert batch.rejected == {"too many fields": 1} and batch.kept == 1
    assert batch.examples == ["file comma.csv line 3: too many fields"]


def test_duplicates_collapse_later_line_wins_and_order_does_not_matter(
    settings, replay_csv, tmp_path
):
    good = rows(replay_csv, 5)
    shuffled = [good[3], good[0], good[4], good[1], with_close(good[1], "12345.67"), good[2]]
    batch = fetch(settings, write(tmp_path / "dups.csv", shuffled))
    assert batch.duplicates == 1 and batch.kept == 5
    assert (batch.ts[1:] > batch.ts[:-1]).all()
    assert batch.price_usd[1] == 12345.67


def test_window_keeps_only_its_rows(settings, replay_csv):
    batch = fetch(settings, replay_csv, Window.days(date(2023, 11, 5), date(2023, 11, 6)))
    assert batch.kept == 48 and batch.n_rejected == 0


def test_no_valid_row_is_an_error(settings, replay_csv, tmp_path):
    path = write(tmp_path / "allbad.csv", [with_close(r, "x") for r in rows(replay_csv, 3)])
    with pytest.raises(InputError, match=r"no valid observation.*3 rejected"):
        fetch(settings, path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("a,b\n1,2\n", "has no column close, time"),
        ("", "has no column close, time in its header"),  # an empty file has no header
    ],
)
def test_unusable_files_are_one_clear_error(settings, tmp_path, content, message):
    path = tmp_path / "f.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        fetch(settings, path)


def test_window_days_and_chunks():
    w = Window.days(date(2023, 1, 1), date(2023, 1, 3))
    assert w.end - w.start == timedelta(days=3) and len(w.day_list()) == 3
    assert [c.end - c.start for c in w.chunks(timedelta(days=2))] == [
        timedelta(days=2),
        timedelta(days=1),
    ]
    with pytest.raises(ConfigError, match="before --from"):
        Window.days(date(2023, 1, 3), date(2023, 1, 1))
