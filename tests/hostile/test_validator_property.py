"""Property: for any replay file, the core keeps, rejects and counts exactly what an independent
oracle (tests/hostile/oracle.py: csv + Decimal, no SQL) says, line numbers included."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from btc_core.errors import InputError
from btc_core.observations import MAX_EXAMPLES, Window, utc_now
from btc_core.settings import Settings
from btc_core.sources import Replay
from tests.hostile.oracle import expected

EXTRA_COLUMNS = ["date", "hour", "open", "high", "low", "volumefrom", "volumeto"]
FIRST, LAST = 1_574_208_000, 1_704_067_199  # 2019-11-20 .. 2023-12-31, UTC
POOL = [1_696_118_400 + 3600 * i for i in range(4)]  # a few hours, so duplicates happen
ODD_EPOCHS = [
    "", " ", "1e9", "1696118400.0", "1696118400.5", "+1696118400", " 1696118400 ", "-0", ".0",
    "0", "-3600", "4102444799", "4102444800", "99999999999999999999999", "nan", "0x10",
    "1_696_118_400", "١٦٩٦١١٨٤٠٠", "1696118400\x00", '"1696118400"', "\t1696118400",
]  # fmt: skip
ODD_PRICES = [
    "", " ", "nan", "NaN", "-inf", "Infinity", "+infinity", "1e400", "-1e400", "1e-400", "0",
    "-0.0", "+5", ".5", "5.", "5.e3", "1E5", "e5", "1_000", " 42 ", "\t42", '"42"', "42\x00",
    "ÿ", "10000000", "10000000.01", "1e7", "4.9e-324", "sNaN", "--5", "+-5", ".", "1e",
]  # fmt: skip

NO_STRUCTURE = st.characters(blacklist_characters=",\r\n", codec="utf-8")
epochs = st.one_of(
    st.integers(FIRST, LAST).map(str),
    st.sampled_from(POOL).map(str),
    st.integers(-(10**12), 10**13).map(str),
    st.decimals(FIRST, LAST, places=3, allow_nan=False).map(str),
    st.sampled_from(ODD_EPOCHS),
    st.text(NO_STRUCTURE, max_size=12),
)
prices = st.one_of(
    st.decimals("0.01", "200000", places=2).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(ODD_PRICES),
    st.text(st.sampled_from("0123456789.eE+- "), max_size=8),
    st.text(NO_STRUCTURE, max_size=8),
)
others = st.one_of(st.just("1.5"), st.text(NO_STRUCTURE, max_size=4))


@st.composite
def replay_files(draw: st.DrawFn) -> tuple[bytes, tuple[datetime, datetime] | None]:
    extras = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), unique=True, max_size=4))
    header = draw(st.permutations(["time", "close", *extras]))
    lines = [",".join(header)]
    for _ in range(draw(st.integers(0, 30))):
        fields = {"time": draw(epochs), "close": draw(prices)}
        row = [fields[name] if name in fields else draw(others) for name in header]
        shape = draw(st.sampled_from(["row"] * 8 + ["extra", "short", "blank", "spaces", "text"]))
        if shape == "extra":
            row.append(draw(others))
        elif shape == "short":
            row = row[: draw(st.integers(0, len(row) - 1))]
        lines.append(
            {"blank": "", "spaces": "   ", "text": draw(st.text(max_size=20))}.get(
                shape, ",".join(row)
            )
        )
    ends = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    text = ""
    for line in lines:
        text += line + (draw(st.sampled_from(["\n", "\r\n", "\r"])) if ends == "mixed" else ends)
    if draw(st.booleans()):
        text = text.rstrip("\r\n") + draw(st.sampled_from(["", "\n\n", "\r\n\r\n"]))
    bom = "\ufeff" if draw(st.booleans()) else ""
    try:
        data = (bom + text).encode(draw(st.sampled_from(["utf-8", "latin-1"])))
    except UnicodeEncodeError:
        data = (bom + text).encode("utf-8")
    window = None
    if draw(st.booleans()):
        first = draw(st.dates(date(2019, 11, 20), date(2023, 12, 31)))
        last = draw(st.dates(first, date(2023, 12, 31)))
        w = Window.days(first, last)
        window = (w.start, w.end)
    return data, window


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=replay_files())
@example(case=(b"time,close\n1574208000,0.01,\n", None))  # found: DuckDB dropped the empty field
def test_the_validator_agrees_with_the_oracle_on_any_file(case, tmp_path, caplog):
    data, window = case
    path = tmp_path / "any.csv"
    path.write_bytes(data)
    settings = Settings.from_env(env={})
    now = utc_now()
    want = expected(data, now, settings.max_price_usd, window)
    source = Replay(settings, path)
    if not want.kept:
        with pytest.raises(InputError, match="no valid observation"):
            source.fetch(Window(*window) if window else None)
        return
    batch = source.fetch(Window(*window) if window else None)
    kept = {
        int(ts.replace(tzinfo=UTC).timestamp()): price
        for ts, price in zip(batch.ts.tolist(), batch.price_usd.tolist(), strict=True)
    }
    assert kept == want.kept
    assert batch.rejected == dict(want.rejected)
    assert (batch.received, batch.duplicates, batch.changed, batch.outside) == (
        want.received,
        want.duplicates,
        want.changed,
        want.outside,
    )
    assert batch.received == batch.kept + batch.n_rejected + batch.duplicates
    first = sorted((line, reason) for reason, lines in want.lines.items() for line in lines)
    assert batch.examples == [
        f"file any.csv line {line}: {reason}" for line, reason in first[:MAX_EXAMPLES]
    ]
