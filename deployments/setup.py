"""Idempotent setup of the Prefect side: work pools, Secret blocks, concurrency limits, automations.

    python -m deployments.setup            # against PREFECT_API_URL (local server or Cloud)

Safe to run again and again: pools are overwritten with the template from this file, existing
Secret blocks are only replaced when a value is given in the environment, limits and automations
are updated in place.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.blocks.system import Secret
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
)
from prefect.events.actions import DoNothing, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from btc_core.settings import Settings
from flows.btc import PLACEHOLDER, SECRET_BLOCKS, WRITER_LIMIT

PROCESS_POOL = "btc-process"
ALERTS_BLOCK = "btc-alerts"
FLOW_NAMES = ["btc-pipeline", "btc-backfill"]


def ensure_work_pools(client: SyncPrefectClient) -> list[str]:
    """The process pool (overwritten if it exists)."""
    client.create_work_pool(
        WorkPoolCreate(
            name=PROCESS_POOL, type="process", description="BTC pipeline: process worker"
        ),
        overwrite=True,
    )
    return [PROCESS_POOL]


def ensure_secret_blocks(settings: Settings) -> list[str]:
    """Secret blocks from the environment; a placeholder when absent, never clobbering a value."""
    done = []
    for field, name in SECRET_BLOCKS.items():
        value = getattr(settings, field)
        try:
            Secret.load(name)
            exists = True
        except ValueError:
            exists = False
        if value:
            Secret(value=value).save(name, overwrite=True)
            done.append(f"{name} (set from BTC_{field.upper()})")
        elif not exists:
            Secret(value=PLACEHOLDER).save(name)
            done.append(
                f"{name} (placeholder '{PLACEHOLDER}': set it in the UI or re-run with BTC_{field.upper()})"
            )
        else:
            done.append(f"{name} (kept)")
    return done


def ensure_writer_limit(client: SyncPrefectClient) -> str:
    """A global concurrency limit of 1 for DuckDB writers, held by the server (works across hosts)."""
    try:
        client.read_global_concurrency_limit_by_name(WRITER_LIMIT)
        client.update_global_concurrency_limit(
            WRITER_LIMIT, GlobalConcurrencyLimitUpdate(limit=1, active=True)
        )
    except ObjectNotFound:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=WRITER_LIMIT, limit=1)
        )
    return WRITER_LIMIT


def alerts_block(settings: Settings) -> UUID | None:
    """A Slack-compatible webhook block for alerts, when BTC_ALERTS_WEBHOOK_URL is set."""
    if not settings.alerts_webhook_url:
        return None
    block = CustomWebhookNotificationBlock(
        name="btc-alerts",
        url=settings.alerts_webhook_url,
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}"},
    )
    return block.save(ALERTS_BLOCK, overwrite=True)


def automations(block_id: UUID | None) -> list[AutomationCore]:
    """Act on failed or crashed runs, and on runs stuck Late because no worker polls."""
    related = {"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAMES}

    def notify(subject: str, body: str) -> SendNotification | DoNothing:
        if block_id is None:
            return DoNothing()
        return SendNotification(block_document_id=block_id, subject=subject, body=body)

    return [
        AutomationCore(
            name="btc-run-failed",
            description="A BTC flow run failed or crashed: alert (data already loaded stays loaded).",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match_related=related,
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                notify(
                    "BTC pipeline run {{ flow_run.name }} ended {{ flow_run.state.name }}",
                    "{{ flow.name }} / {{ flow_run.name }}: {{ flow_run.state.message }}\n"
                    "See {{ flow_run|ui_url }}",
                )
            ],
        ),
        AutomationCore(
            name="btc-runs-stuck-late",
            description="A BTC run is Late: no worker polls its work pool.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Late"},
                match_related=related,
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(seconds=0),
            ),
            actions=[
                notify(
                    "BTC run {{ flow_run.name }} is Late: no worker is polling",
                    "Start a worker on your machine: workers/start-process-worker.sh "
                    "(or: prefect worker start --pool "
                    + PROCESS_POOL
                    + "). See {{ flow_run|ui_url }}",
                )
            ],
        ),
    ]


def ensure_automations(client: SyncPrefectClient, block_id: UUID | None) -> list[str]:
    """Create or replace the automations by name."""
    names = []
    for automation in automations(block_id):
        for existing in client.read_automations_by_name(automation.name):
            client.delete_automation(existing.id)
        client.create_automation(automation)
        names.append(automation.name)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    settings = Settings.from_env()
    with get_client(sync_client=True) as client:
        print(f"work pools: {', '.join(ensure_work_pools(client))}")
        print(f"secret blocks: {'; '.join(ensure_secret_blocks(settings))}")
        print(f"global concurrency limit: {ensure_writer_limit(client)} = 1")
        block_id = alerts_block(settings)
        print(
            f"alerts: {'webhook block ' + ALERTS_BLOCK if block_id else 'none (set BTC_ALERTS_WEBHOOK_URL)'}"
        )
        print(f"automations: {', '.join(ensure_automations(client, block_id))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
