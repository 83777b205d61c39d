"""Retry-After as RFC 9110 allows it: delay-seconds or an HTTP-date."""

from datetime import UTC, datetime

import pytest

from btc_core.sources import _retry_after

NOW = datetime(2026, 12, 7, 16, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Mon, 07 Dec 2026 16:02:00 GMT", 120.0),  # IMF-fixdate
        ("Monday, 07-Dec-26 16:00:30 GMT", 30.0),  # obsolete RFC 850
        ("Mon Dec  7 16:00:05 2026", 5.0),  # obsolete asctime
        ("Mon, 07 Dec 2026 15:00:00 GMT", 0.0),  # already past
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Mon, 99 Foo 2026 16:02:00 GMT", None),
    ],
)
def test_retry_after(header, seconds):
    assert _retry_after(header, NOW) == seconds
