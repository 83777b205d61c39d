import json
from datetime import date

import pytest

from btc_core.errors import NotifyError
from btc_core.notify import message, notify
from btc_core.pipeline import run_cycle
from btc_core.transform import DayAvg, Latest

LATEST = Latest(
    DayAvg(date(2023, 12, 31), 42420.0213, 24), DayAvg(date(2023, 12, 30), 42092.35, 24)
)


def test_message_has_latest_average_and_change():
    assert message(LATEST) == (
        "BTC daily average 2023-12-31: $42,420.02 over 24 observations (+0.78% vs 2023-12-30: $42,092.35)"
    )
    assert message(Latest(LATEST.current, None)).endswith("over 24 observations")
    assert message(None) == "BTC daily average: no data yet"


def test_file_channel_appends_json_lines(settings):
    s = settings.replace(notify="file")
    notify(s, LATEST)
    notify(s, LATEST)
    lines = s.notify_file.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["avg_price_usd"] == 42420.02


def test_unreachable_webhook_hides_its_url_and_keeps_the_data(settings):
    secret = "http://127.0.0.1:9/services/T000/B000/sekrit-token"
    s = settings.replace(notify="webhook", webhook_url=secret)
    with pytest.raises(NotifyError) as err:
        notify(s, LATEST)
    assert "sekrit" not in str(err.value) and "127.0.0.1" not in str(err.value)
    report = run_cycle(s)
    assert report.notify_error and "sekrit" not in report.notify_error
    assert report.load.inserted == 2208 and report.latest is not None
