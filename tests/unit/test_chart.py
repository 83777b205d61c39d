from datetime import date, timedelta

import pytest

from btc_core.chart import daily_avg_png, last_days, markdown_image, save_png
from btc_core.errors import ConfigError, InputError
from btc_core.observations import Window
from btc_core.pipeline import backfill, store_for
from btc_core.settings import Settings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_chart_covers_the_last_90_days_and_is_a_stable_png(settings, tmp_path):
    backfill(settings, Window.days(date(2023, 10, 1), date(2023, 12, 31)))
    rows = last_days(store_for(settings))
    assert len(rows) == 90
    assert rows[-1].day - rows[0].day == timedelta(days=89)
    assert str(rows[-1].day) == "2023-12-31"
    png = daily_avg_png(rows)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    assert daily_avg_png(rows) == png  # same rows, same bytes
    assert markdown_image(png, "t").startswith("![t](data:image/png;base64,iVBORw0KGgo")
    path = save_png(png, tmp_path / "charts", "c")
    assert path.read_bytes() == png and not list(path.parent.glob(".*"))


def test_an_empty_store_has_nothing_to_chart_and_a_missing_one_is_not_created(settings):
    store = store_for(settings)
    with pytest.raises(InputError, match=r"no DuckDB file at .*: run the pipeline first"):
        last_days(store)
    assert not settings.db_path.exists()
    with store.connect():  # the schema, no rows
        pass
    assert last_days(store) == []
    with pytest.raises(InputError, match="no daily averages"):
        daily_avg_png([])


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "inline"),
        ({"BTC_ARTIFACTS": "summary"}, "link"),
        ({"BTC_ARTIFACTS": "none", "BTC_CHART": "link"}, "none"),
        ({"BTC_CHART": "link"}, "link"),
        ({"BTC_CHART": "none"}, "none"),
    ],
)
def test_the_chart_follows_the_hybrid_boundary(env, mode):
    assert Settings.from_env(env).chart_mode() == mode


def test_an_inline_chart_in_strict_mode_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="BTC_CHART=inline puts prices on the control plane"):
        Settings.from_env({"BTC_ARTIFACTS": "summary", "BTC_CHART": "inline"})
    settings = Settings.from_env({"BTC_DB_PATH": str(tmp_path / "x" / "btc.duckdb")})
    assert settings.charts_folder() == tmp_path / "x" / "charts"
