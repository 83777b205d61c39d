"""Notifications: stdout (default), a Slack-compatible webhook, or a JSON-lines file.

A notification runs after the data is committed, so its failure never undoes a load. The webhook
URL is a secret: it never appears in a message, a log line or an exception.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from btc_core.errors import NotifyError
from btc_core.files import append
from btc_core.settings import Settings
from btc_core.sources import USER_AGENT
from btc_core.transform import Latest, round_cents


def message(latest: Latest | None) -> str:
    """The text people read: latest daily average and its change against the previous day."""
    if latest is None:
        return "BTC daily average: no data yet"
    cur = latest.current
    text = f"BTC daily average {cur.day}: ${cur.avg_price_usd:,.2f} over {cur.n_obs} observations"
    if latest.previous is not None and latest.change_pct is not None:
        text += f" ({latest.change_pct:+.2f}% vs {latest.previous.day}: ${latest.previous.avg_price_usd:,.2f})"
    return text


def payload(latest: Latest | None) -> dict[str, Any]:
    """Slack-compatible body (``text``) plus the numbers for machines."""
    body: dict[str, Any] = {"text": message(latest)}
    if latest is not None:
        body["day"] = latest.current.day.isoformat()
        body["avg_price_usd"] = round_cents(latest.current.avg_price_usd)
        body["n_obs"] = latest.current.n_obs
        body["change_pct"] = None if latest.change_pct is None else round(latest.change_pct, 4)
    return body


def notify(settings: Settings, latest: Latest | None, stream: TextIO | None = None) -> str:
    """Send the message on the configured channel; return a one-line description of where."""
    body = payload(latest)
    channel = settings.notify
    if channel == "none":
        return "notification disabled"
    if channel == "stdout":
        print(body["text"], file=stream or sys.stdout, flush=True)
        return "notified on stdout"
    if channel == "file":
        return _to_file(settings.notify_file, body)
    settings.require_secrets()
    return _to_webhook(settings, body)


def _to_file(path: Path, body: dict[str, Any]) -> str:
    try:
        append(path, json.dumps(body, sort_keys=True) + "\n")
    except OSError as exc:
        raise NotifyError(f"cannot append the notification to {path}: {exc.strerror}") from None
    return f"notified in {path}"


def _to_webhook(settings: Settings, body: dict[str, Any]) -> str:
    import requests  # the webhook's only: the other channels start without it

    # Errors are rebuilt from scratch: requests' own messages contain the (secret) URL.
    try:
        resp = requests.post(
            settings.webhook_url.get_secret_value(),
            json=body,
            headers={"User-Agent": USER_AGENT},
            timeout=(settings.connect_timeout_s, settings.read_timeout_s),
        )
    except requests.Timeout:
        raise NotifyError("webhook notification timed out (URL hidden: it is a secret)") from None
    except requests.RequestException as exc:
        kind = type(exc).__name__
        raise NotifyError(
            f"webhook notification failed: {kind} (URL hidden: it is a secret)"
        ) from None
    if resp.status_code >= 300:
        raise NotifyError(f"webhook answered HTTP {resp.status_code} (URL hidden: it is a secret)")
    return "notified the webhook"
