"""Idempotent setup of the Prefect side: work pools, Secret blocks, concurrency limits, automations.

    python -m deployments.setup            # against PREFECT_API_URL (local server or Cloud)
    python -m deployments.setup --s3-bucket btc-results --s3-endpoint-url http://127.0.0.1:9000
                                           # also an S3Bucket block for task results (see docs/hybrid.md)
    python -m deployments.setup --cluster-pools   # also the btc-k8s and btc-ecs pools (docs/cluster.md)

Safe to run again and again: pools are overwritten with the template from this file, existing
Secret blocks are only replaced when a value is given in the environment, limits and automations
are updated in place. The Docker pool, the S3 block and the cluster pools import their packages
(dependency group ``platform``) when asked for: ``make demo`` needs only the ``prefect`` group.
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from importlib.util import find_spec
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.blocks.system import Secret
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
)
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, DoNothing, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from btc_core.settings import Settings
from deployments.names import DOCKER_POOL, PROCESS_POOL
from flows.btc import PLACEHOLDER, SECRET_BLOCKS, WRITER_LIMIT
from infra.image import flow_image

# On each Docker worker's host: the DuckDB volume, and a folder whose worker.env holds the
# secrets; the flow image's entry point exports it (infra/entrypoint.sh). Only paths reach the
# control plane, never the values. BTC_WORKER_SECRETS_DIR moves the folder (infra/compose.py,
# deployments/hybrid.py: no root-owned /etc/btc made by Docker on a machine that has none).
DATA_VOLUME = "btc-data"
WORKER_SECRETS_DIR = os.environ.get("BTC_WORKER_SECRETS_DIR", "/etc/btc")
RESULTS_BLOCK = "btc-results"
# Runs that stop sending heartbeats (a worker's machine died with its containers) are marked
# Crashed after this long. Keep it above PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the workers
# (Prefect's default is 180 s; docs/hybrid.md suggests 30 s and 90 s here).
ZOMBIE_AFTER_S = 540
ALERTS_BLOCK = "btc-alerts"
FLOW_NAMES = ["btc-pipeline", "btc-backfill", "btc-compact"]


# The process worker's flow-run command. Left unset, Prefect 3.9's process worker starts a
# workspace supervisor (a Python process that imports Prefect, reads the deployment and runs its
# pull steps) which then execs `python -m prefect.engine`: two interpreter start-ups per run,
# about +1 s (docs/prefect-cost.md). Set, the worker starts the engine directly, and the engine
# runs the pull steps itself. `python` is the first on the worker's PATH: the worker's own
# environment var/worker-venv for workers/start-process-worker.sh (uv run) and
# deployments/stack.py (deployments/worker_env.py), the project's in the image.
ENGINE_COMMAND = "python -m prefect.engine"


def process_job_template() -> dict:
    """Prefect's process job template, the engine started directly (``ENGINE_COMMAND``)."""
    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = ENGINE_COMMAND
    return template


def docker_job_template(image: str) -> dict:
    """prefect-docker's base job template with this project's defaults: the flow image (a local
    tag, pulled only if absent), host networking (a container reaches an API on 127.0.0.1), the
    DuckDB volume, the worker-side secrets folder, and PREFECT_HOME inside the image (a worker
    passes its own Prefect settings on to the containers it starts)."""
    from prefect_docker.worker import DockerWorker

    template = DockerWorker.get_default_base_job_template()
    defaults = {
        "image": image,
        "image_pull_policy": "IfNotPresent",
        "network_mode": "host",
        "volumes": [f"{DATA_VOLUME}:/data", f"{WORKER_SECRETS_DIR}:/run/btc:ro"],
        "env": {"PREFECT_HOME": "/home/btc/.prefect"},
        "auto_remove": True,
    }
    for name, value in defaults.items():
        template["variables"]["properties"][name]["default"] = value
    return template


def ensure_work_pools(
    client: SyncPrefectClient, image: str | None = None, docker: bool = True
) -> list[str]:
    """The process pool and (with ``docker``) the Docker pool, overwritten if they exist."""
    client.create_work_pool(
        WorkPoolCreate(
            name=PROCESS_POOL,
            type="process",
            description="BTC pipeline: process worker",
            base_job_template=process_job_template(),
        ),
        overwrite=True,
    )
    if not docker:
        return [PROCESS_POOL]
    client.create_work_pool(
        WorkPoolCreate(
            name=DOCKER_POOL,
            type="docker",
            description="BTC pipeline: Docker worker, flow image built by infra/image.py",
            base_job_template=docker_job_template(image or flow_image()),
        ),
        overwrite=True,
    )
    return [PROCESS_POOL, DOCKER_POOL]


def ensure_result_storage(
    bucket: str, endpoint_url: str | None = None, create_bucket: bool = False
) -> str:
    """An S3Bucket block for persisted task results. It holds no keys: boto3 takes them from
    the worker's environment (AWS_ACCESS_KEY_ID, ...). Workers opt in with
    PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=s3-bucket/btc-results. ``create_bucket`` creates
    the bucket if missing, with the keys of this environment (a fresh MinIO, say)."""
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

    credentials = AwsCredentials(
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint_url),
    )
    if create_bucket:
        s3 = credentials.get_s3_client()
        if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=bucket)
    S3Bucket(bucket_name=bucket, credentials=credentials).save(RESULTS_BLOCK, overwrite=True)
    return f"s3-bucket/{RESULTS_BLOCK}"


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
    url = settings.alerts_webhook_url.get_secret_value()
    if not url:
        return None
    block = CustomWebhookNotificationBlock(
        name="btc-alerts",
        url=url,
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}"},
    )
    return block.save(ALERTS_BLOCK, overwrite=True)  # type: ignore[return-value]  # sync here


def automations(
    block_id: UUID | None, zombie_after_s: int = ZOMBIE_AFTER_S
) -> list[AutomationCore]:
    """Act on failed or crashed runs, on runs stuck Late because no worker polls, and mark
    Crashed the runs whose heartbeats stopped."""
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
        zombie_automation(zombie_after_s),
    ]


def zombie_automation(within_s: int) -> AutomationCore:
    """Prefect's recipe for zombie runs: after a heartbeat, expect another heartbeat or a final
    state within ``within_s`` seconds, else mark the run Crashed (which alerts btc-run-failed).
    A Docker worker's machine that dies takes its containers along; nobody else would say so."""
    return AutomationCore(
        name="btc-crash-zombie-runs",
        description="A BTC flow run stopped sending heartbeats: mark it Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAMES},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {within_s} s: the worker's machine or container died.",
            )
        ],
    )


def ensure_automations(
    client: SyncPrefectClient, block_id: UUID | None, zombie_after_s: int = ZOMBIE_AFTER_S
) -> list[str]:
    """Create the missing automations, update in place (by name) those that differ, and leave
    alone those that already match. An automation keeps what its trigger is waiting for (the
    zombie one: each run's last heartbeat) only while it is left alone: the server gives the
    trigger a new id on every update, which forgets it, and deleting forgets it too. Extra
    automations of the same name (each would act too) are deleted."""
    names = []
    for automation in automations(block_id, zombie_after_s):
        existing = client.read_automations_by_name(automation.name)
        for duplicate in existing[1:]:
            client.delete_automation(duplicate.id)
        if not existing:
            client.create_automation(automation)
        elif _definition(existing[0]) != automation.model_dump():
            client.update_automation(existing[0].id, automation)
        names.append(automation.name)
    return names


def _definition(automation: AutomationCore) -> dict:
    """What an automation read back from the server does, comparable with one made here."""
    return AutomationCore.model_validate(automation.model_dump(exclude={"id"})).model_dump()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--flow-image", help="image of the Docker pool (default: infra/image.py's tag)"
    )
    parser.add_argument(
        "--no-docker-pool",
        action="store_true",
        help="leave the Docker pool out (make demo: nothing would poll it, its runs would go Late)",
    )
    parser.add_argument("--s3-bucket", help="also create the S3Bucket block for task results")
    parser.add_argument(
        "--s3-endpoint-url", help="S3-compatible endpoint (MinIO, ...); AWS if unset"
    )
    parser.add_argument(
        "--s3-create-bucket", action="store_true", help="create the bucket if it is missing"
    )
    parser.add_argument(
        "--cluster-pools",
        action="store_true",
        help="also the Kubernetes and ECS pools from infra/*/base-job-template.json (opt-in: "
        "btc doctor warns about pools no worker polls)",
    )
    parser.add_argument(
        "--zombie-after",
        type=int,
        default=ZOMBIE_AFTER_S,
        help="seconds without a heartbeat before a run is marked Crashed",
    )
    args = parser.parse_args()
    needed = {"prefect_docker": not args.no_docker_pool, "prefect_aws": bool(args.s3_bucket)}
    missing = [name for name, wanted in needed.items() if wanted and not find_spec(name)]
    if missing:
        parser.error(
            f"{' and '.join(missing)} not installed (the platform group): "
            "python3 -m uv sync --group platform, or leave the Docker pool out (--no-docker-pool)"
        )
    settings = Settings.from_env()
    with get_client(sync_client=True) as client:
        pools = ensure_work_pools(client, args.flow_image, docker=not args.no_docker_pool)
        print(f"work pools: {', '.join(pools)}")
        if args.cluster_pools:
            from deployments.cluster import ensure_cluster_pools

            print(f"cluster pools: {', '.join(ensure_cluster_pools(client, args.flow_image))}")
        if args.s3_bucket:
            storage = ensure_result_storage(
                args.s3_bucket, args.s3_endpoint_url, args.s3_create_bucket
            )
            print(f"result storage: {storage}")
        print(f"secret blocks: {'; '.join(ensure_secret_blocks(settings))}")
        print(f"global concurrency limit: {ensure_writer_limit(client)} = 1")
        block_id = alerts_block(settings)
        print(
            f"alerts: {'webhook block ' + ALERTS_BLOCK if block_id else 'none (set BTC_ALERTS_WEBHOOK_URL)'}"
        )
        print(f"automations: {', '.join(ensure_automations(client, block_id, args.zombie_after))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
