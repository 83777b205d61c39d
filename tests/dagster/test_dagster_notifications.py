"""The notification sensor: once per new ``daily_avg``, retried while the channel fails."""

import json
import socket

import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from btc_core.errors import NotifyError
from btc_core.settings import Settings
from dagster_port.assets import btc_price, daily_avg
from dagster_port.notifications import daily_avg_notification
from dagster_port.resources import BtcResource, Notifier, from_settings


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_each_new_daily_avg_is_notified_once(
    settings: Settings,
    resources: dict[str, BtcResource],
    stored_instance: DagsterInstance,
) -> None:
    materialize([btc_price, daily_avg], resources=resources, instance=stored_instance)
    sensor_resources = {
        "duckdb": resources["duckdb"],
        "notifier": from_settings(Notifier, settings.replace(notify="file")),
    }

    def tick(cursor: str | None) -> tuple[str, str | None]:
        """One sensor tick as the daemon runs it: (skip message, new cursor)."""
        context = build_sensor_context(
            instance=stored_instance, cursor=cursor, resources=sensor_resources
        )
        data = daily_avg_notification.evaluate_tick(context)
        assert not data.run_requests
        return data.skip_message or "", data.cursor

    sent, cursor = tick(None)
    again, _ = tick(cursor)

    (line,) = settings.notify_file.read_text().splitlines()
    assert json.loads(line)["day"] == "2023-12-31"
    assert "notified in" in sent and cursor
    assert "No new materialization" in again


def test_a_failed_send_raises_and_keeps_the_cursor_for_the_next_tick(
    resources: dict[str, BtcResource], stored_instance: DagsterInstance
) -> None:
    materialize([btc_price, daily_avg], resources=resources, instance=stored_instance)
    notifier = Notifier(notify="webhook", webhook_url=closed_port_url(), connect_timeout_s=1.0)
    context = build_sensor_context(
        instance=stored_instance, resources={"duckdb": resources["duckdb"], "notifier": notifier}
    )

    with pytest.raises(NotifyError, match="URL hidden"):
        daily_avg_notification.evaluate_tick(context)
    assert context.cursor is None
