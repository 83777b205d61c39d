"""Kubernetes and ECS work pools from the base job templates in ``infra/``, and offline rendering.

    python -m deployments.setup --cluster-pools      # also creates btc-k8s and btc-ecs (opt-in)
    python -m deployments.cluster render kubernetes  # the Job the worker would submit, as JSON
    python -m deployments.cluster render ecs         # the ECS task definition and RunTask request

Rendering uses the workers' own job configuration classes (prefect-kubernetes, prefect-aws) on a
made-up flow run, so it shows exactly what a worker would send to the cluster, with no cluster:
pipe it to ``kubectl apply --dry-run=server -f -`` or compare it with your IaC. The pools are
opt-in because ``btc doctor`` warns about every pool no worker polls.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any

from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

from btc_core.settings import PROJECT_ROOT

K8S_POOL = "btc-k8s"
ECS_POOL = "btc-ecs"
TEMPLATES = {
    "kubernetes": PROJECT_ROOT / "infra" / "k8s" / "base-job-template.json",
    "ecs": PROJECT_ROOT / "infra" / "ecs" / "base-job-template.json",
}
POOLS = {"kubernetes": K8S_POOL, "ecs": ECS_POOL}
# ECS needs a task definition ARN to build the RunTask request; the worker gets it from AWS
# when it registers the definition. Offline we stand in an ARN of the same shape.
OFFLINE_TASK_DEFINITION_ARN = "arn:aws:ecs:eu-west-1:123456789012:task-definition/btc-flow:1"
OFFLINE_REGION = "eu-west-1"


def job_template(kind: str, image: str | None = None) -> dict[str, Any]:
    """The base job template of ``kind`` (``kubernetes`` or ``ecs``), optionally another image."""
    template = json.loads(Path(TEMPLATES[kind]).read_text())
    if image:
        template["variables"]["properties"]["image"]["default"] = image
    return template


def ensure_cluster_pools(client: SyncPrefectClient, image: str | None = None) -> list[str]:
    """The Kubernetes and ECS pools from the templates in infra/ (overwritten if they exist)."""
    for kind, name in POOLS.items():
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=kind,
                description=f"BTC pipeline: {kind} worker (template {TEMPLATES[kind].relative_to(PROJECT_ROOT)})",
                base_job_template=job_template(kind, image),
            ),
            overwrite=True,
        )
    return list(POOLS.values())


def sample_run(deployment_name: str, flow_name: str) -> tuple[FlowRun, DeploymentResponse, Flow]:
    """A flow run of a deployment, built in-process as the API would return it."""
    flow = Flow(id=uuid.uuid4(), name=flow_name, labels={})
    deployment = DeploymentResponse(
        id=uuid.uuid4(), name=deployment_name, flow_id=flow.id, labels={}
    )
    run = FlowRun(
        id=uuid.uuid4(), name="offline-render", flow_id=flow.id, deployment_id=deployment.id
    )
    return run, deployment, flow


JOB_CONFIGURATIONS = {"kubernetes": KubernetesWorkerJobConfiguration, "ecs": ECSJobConfiguration}


async def prepare(
    kind: str,
    template: dict[str, Any],
    flow_run: FlowRun,
    deployment: DeploymentResponse | None = None,
    flow: Flow | None = None,
    values: dict[str, Any] | None = None,
    client: PrefectClient | None = None,
) -> Any:
    """The ``kind`` worker's job configuration for ``flow_run``, from ``template`` and job
    variables ``values``: for Kubernetes, ``.job_manifest`` is the Job; for ECS, pass it to
    :func:`ecs_requests`."""
    config = await JOB_CONFIGURATIONS[kind].from_template_and_values(
        copy.deepcopy(template), values or {}, client=client
    )
    config.prepare_for_flow_run(flow_run, deployment, flow)
    return config


def ecs_requests(
    config: ECSJobConfiguration, flow_run: FlowRun, pool: str = ECS_POOL
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the ECS worker would send to RegisterTaskDefinition and RunTask for a prepared
    configuration: the worker's own methods, which need no AWS call with this template (the
    network configuration is in the template, so no VPC lookup)."""
    worker = ECSWorker(work_pool_name=pool)
    task_definition = worker._prepare_task_definition(config, OFFLINE_REGION, flow_run)
    request = worker._prepare_task_run_request(config, task_definition, OFFLINE_TASK_DEFINITION_ARN)
    return task_definition, request


async def render_for_pool(
    client: PrefectClient, pool: WorkPool, flow_run: FlowRun
) -> KubernetesWorkerJobConfiguration | ECSJobConfiguration:
    """What a worker of ``pool`` would prepare for a real ``flow_run`` read from the server:
    the pool's stored template, the deployment's and the run's job variables, merged by the
    worker's own ``resolve_for_flow_run``."""
    return await JOB_CONFIGURATIONS[pool.type].resolve_for_flow_run(
        flow_run, client=client, work_pool=pool, worker_name="offline-render"
    )


async def render(kind: str, image: str | None) -> dict[str, Any]:
    """The rendered job of ``kind`` for a made-up run of btc-pipeline."""
    run, deployment, flow = sample_run(f"btc-hourly-{POOLS[kind].split('-')[1]}", "btc-pipeline")
    template = job_template(kind, image)
    config = await prepare(kind, template, run, deployment, flow)
    if kind == "kubernetes":
        return config.job_manifest
    task_definition, request = ecs_requests(config, run)
    return {"taskDefinition": task_definition, "runTask": request}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("render", help="print the job a worker would submit for a flow run")
    show.add_argument("kind", choices=sorted(TEMPLATES))
    show.add_argument("--flow-image", help="image instead of the template's default")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(render(args.kind, args.flow_image)), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
