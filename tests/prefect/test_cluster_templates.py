"""Kubernetes and ECS job templates, validated offline with the workers' own classes.

No cluster and no AWS here: the job a worker would submit is rendered by prefect-kubernetes'
and prefect-aws' job configurations (and the ECS worker's own request builders) for flow runs
built in-process, and for flow runs of deployments created on a real server from the files.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from prefect_aws.workers.ecs_worker import ECSWorker
from prefect_kubernetes.worker import KubernetesWorker

from btc_core.settings import PROJECT_ROOT
from deployments.cluster import (
    ECS_POOL,
    K8S_POOL,
    TEMPLATES,
    ecs_requests,
    ensure_cluster_pools,
    job_template,
    prepare,
    render_for_pool,
    sample_run,
)
from deployments.deploy import prefect_cli
from infra.image import REPOSITORY, version

pytestmark = pytest.mark.integration
SECRET_VALUES = {
    "BTC_COINGECKO_API_KEY": "cg-test-key-123",
    "BTC_WEBHOOK_URL": "https://hooks.test/T0",
}
SETTINGS_ENV = {
    "BTC_SOURCE": "coingecko",
    "BTC_SECRETS_FROM": "env",
    "BTC_ARTIFACTS": "summary",
    "BTC_DB_PATH": "/data/btc.duckdb",
}
DEFAULTS = {
    "kubernetes": KubernetesWorker.get_default_base_job_template,
    "ecs": ECSWorker.get_default_base_job_template,
}


@pytest.fixture
def api(bare_server, monkeypatch):
    """The test server as the API, and secret values in this environment (which must not leak
    into any rendered job: jobs reference secrets, they never carry them)."""
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)
    with temporary_settings({PREFECT_API_URL: bare_server.api_url}):
        yield bare_server


def rendered(*parts: Any) -> str:
    return json.dumps(parts, default=str)


def assert_no_secret_values(*parts: Any) -> None:
    text = rendered(*parts)
    for value in SECRET_VALUES.values():
        assert value not in text


def container_env(manifest: dict) -> dict[str, dict]:
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e for e in env}


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_templates_keep_every_field_of_the_workers_default(kind):
    """A customized template still offers everything the installed worker's default does (an
    upgrade of prefect-kubernetes/prefect-aws that adds a field shows up here)."""
    ours, default = job_template(kind), DEFAULTS[kind]()
    assert set(default["job_configuration"]) <= set(ours["job_configuration"])
    assert set(default["variables"]["properties"]) <= set(ours["variables"]["properties"])
    assert ours["variables"]["properties"]["image"]["default"] == f"{REPOSITORY}:{version()}"


async def k8s_job(values: dict | None = None) -> dict:
    run, deployment, flow = sample_run("btc-hourly-k8s", "btc-pipeline")
    async with get_client() as client:
        config = await prepare(
            "kubernetes", job_template("kubernetes"), run, deployment, flow, values, client
        )
    assert config.namespace == "btc"
    manifest = config.job_manifest
    labels = manifest["metadata"]["labels"]
    assert labels["prefect.io/flow-run-id"] == str(run.id)
    assert labels["prefect.io/deployment-name"] == "btc-hourly-k8s"
    assert labels["app.kubernetes.io/part-of"] == "btc-orchestration"
    assert container_env(manifest)["PREFECT__FLOW_RUN_ID"]["value"] == str(run.id)
    return manifest


def test_kubernetes_job_image_env_resources_and_secret_references(api):
    manifest = asyncio.run(k8s_job())
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == (
        f"{REPOSITORY}:{version()}",
        "IfNotPresent",
    )
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = container_env(manifest)
    assert {k: env[k]["value"] for k in SETTINGS_ENV} == SETTINGS_ENV
    assert env["BTC_COINGECKO_API_KEY"] == {
        "name": "BTC_COINGECKO_API_KEY",
        "valueFrom": {
            "secretKeyRef": {"name": "btc-secrets", "key": "coingecko-api-key", "optional": True}
        },
    }
    assert env["BTC_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["key"] == "webhook-url"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert pod["serviceAccountName"] == "btc-flow-runner"
    assert manifest["metadata"]["namespace"] == "btc"
    assert pod["volumes"] == [
        {"name": "btc-data", "persistentVolumeClaim": {"claimName": "btc-data"}}
    ]
    assert container["volumeMounts"] == [{"name": "btc-data", "mountPath": "/data"}]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert (
        manifest["spec"]["backoffLimit"] == 0
        and manifest["spec"]["ttlSecondsAfterFinished"] == 3600
    )
    assert_no_secret_values(manifest)


def test_kubernetes_job_variables_override_image_and_add_env(api):
    """A deployment's job variables: another image and limits; env is added to the pool's."""
    manifest = asyncio.run(
        k8s_job(
            {
                "image": "registry.test/btc-flow:9.9.9",
                "cpu_limit": "4",
                "secret_name": "btc-prod-secrets",
                "env": {"BTC_DASK_WORKERS": "4"},
            }
        )
    )
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.test/btc-flow:9.9.9"
    assert container["resources"]["limits"]["cpu"] == "4"
    env = container_env(manifest)
    assert env["BTC_DASK_WORKERS"]["value"] == "4"
    assert env["BTC_SOURCE"]["value"] == "coingecko"  # the pool's settings stay
    assert env["BTC_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"] == "btc-prod-secrets"


async def ecs_task(values: dict | None = None) -> tuple[dict, dict]:
    run, deployment, flow = sample_run("btc-hourly-ecs", "btc-pipeline")
    async with get_client() as client:
        config = await prepare("ecs", job_template("ecs"), run, deployment, flow, values, client)
    task_definition, request = ecs_requests(config, run)
    tags = {t["key"]: t["value"] for t in request["tags"]}
    assert tags["prefect.io/flow-run-id"] == str(run.id)
    assert tags["prefect.io/deployment-name"] == "btc-hourly-ecs"
    return task_definition, request


def test_ecs_task_definition_and_run_request(api):
    task_definition, request = asyncio.run(ecs_task())
    container = task_definition["containerDefinitions"][0]
    assert (container["name"], container["image"]) == ("btc-flow", f"{REPOSITORY}:{version()}")
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
        "BTC_COINGECKO_API_KEY": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:btc/coingecko-api-key",
        "BTC_WEBHOOK_URL": "arn:aws:ssm:eu-west-1:123456789012:parameter/btc/webhook-url",
    }
    assert (task_definition["cpu"], task_definition["memory"]) == ("512", "1024")
    assert task_definition["family"] == "btc-flow"
    assert task_definition["requiresCompatibilities"] == ["FARGATE"]
    assert task_definition["executionRoleArn"].endswith(":role/btc-ecs-execution")
    assert task_definition["volumes"][0]["efsVolumeConfiguration"]["fileSystemId"].startswith("fs-")
    assert container["mountPoints"] == [{"sourceVolume": "btc-data", "containerPath": "/data"}]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    override = request["overrides"]["containerOverrides"][0]
    assert override["command"] == ["prefect", "flow-run", "execute"]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert {k: env[k] for k in SETTINGS_ENV} == SETTINGS_ENV
    assert request["launchType"] == "FARGATE" and request["cluster"] == "btc"
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    assert_no_secret_values(task_definition, request)


def test_ecs_prefect_auth_by_arn_replaces_the_template_secrets(api):
    """Known limitation of prefect-aws (0.5.x), documented in docs/cluster.md: with
    ``prefect_api_auth_string_secret_arn`` (or ``prefect_api_key_secret_arn``) set, the worker
    replaces the container's ``secrets`` with its own, dropping the BTC_* references. If this
    test fails, prefect-aws merges them now: drop the workaround from the docs."""
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:btc/prefect-auth"
    with temporary_settings({PREFECT_API_AUTH_STRING: "admin:not-in-the-job"}):
        task_definition, request = asyncio.run(
            ecs_task({"prefect_api_auth_string_secret_arn": arn})
        )
    secrets = task_definition["containerDefinitions"][0]["secrets"]
    assert secrets == [{"name": "PREFECT_API_AUTH_STRING", "valueFrom": arn}]
    assert "admin:not-in-the-job" not in rendered(task_definition, request)


async def run_of(server, deployment_name: str):
    """A flow run of a deployment created on the server, and what its pool's worker prepares."""
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(deployment_name)
        run = await client.create_flow_run_from_deployment(deployment.id)
        pool = await client.read_work_pool(deployment.work_pool_name)
        return pool, run, await render_for_pool(client, pool, run)


def test_pools_from_the_files_and_cluster_deployments_on_a_real_server(api):
    for kind, pool in (
        (k, p) for k, p in zip(("kubernetes", "ecs"), (K8S_POOL, ECS_POOL), strict=True)
    ):
        prefect_cli(
            api.home, api.api_url, "work-pool", "create", pool, "--type", kind,
            "--base-job-template", str(TEMPLATES[kind]), "--overwrite",
        )  # fmt: skip
        with api.client() as client:
            stored = client.read_work_pool(pool)
        assert stored.type == kind and stored.base_job_template == job_template(kind)
    with api.client() as client:  # the setup's path: same pools, another image
        assert ensure_cluster_pools(client, "registry.test/btc-flow:1.0") == [K8S_POOL, ECS_POOL]
        image = client.read_work_pool(K8S_POOL).base_job_template["variables"]["properties"][
            "image"
        ]
        assert image["default"] == "registry.test/btc-flow:1.0"
    prefect_cli(
        api.home, api.api_url, "deploy", "--all", "--prefect-file", "deployments/cluster.yaml"
    )

    pool, run, config = asyncio.run(run_of(api, "btc-backfill-dask/btc-backfill-dask-k8s"))
    container = config.job_manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.test/btc-flow:1.0"
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
    env = container_env(config.job_manifest)
    assert env["BTC_DASK_WORKERS"]["value"] == "4" and env["BTC_SOURCE"]["value"] == "coingecko"
    assert env["PREFECT__FLOW_RUN_ID"]["value"] == str(run.id)
    assert env["PREFECT_API_URL"]["value"] == api.api_url
    assert "valueFrom" in env["BTC_COINGECKO_API_KEY"]

    pool, run, config = asyncio.run(run_of(api, "btc-pipeline/btc-hourly-ecs"))
    task_definition, request = ecs_requests(config, run, pool.name)
    assert task_definition["containerDefinitions"][0]["image"] == "registry.test/btc-flow:1.0"
    env = {
        e["name"]: e["value"] for e in request["overrides"]["containerOverrides"][0]["environment"]
    }
    assert env["PREFECT__DEPLOYMENT_NAME"] == "btc-hourly-ecs"
    assert_no_secret_values(task_definition, request)


def test_worker_manifest_matches_the_pool_and_its_template():
    """infra/k8s/worker.yaml creates what the Jobs of the template refer to."""
    docs = {
        (d["kind"], d["metadata"]["name"]): d
        for d in yaml.safe_load_all((PROJECT_ROOT / "infra" / "k8s" / "worker.yaml").read_text())
    }
    defaults = {
        k: v.get("default")
        for k, v in job_template("kubernetes")["variables"]["properties"].items()
    }
    assert ("Namespace", defaults["namespace"]) in docs
    assert ("ServiceAccount", defaults["service_account_name"]) in docs
    assert ("PersistentVolumeClaim", defaults["data_claim"]) in docs
    worker = docs[("Deployment", "btc-prefect-worker")]["spec"]["template"]["spec"]
    args = worker["containers"][0]["args"]
    assert args[:3] == ["prefect", "worker", "start"]
    assert (
        args[args.index("--pool") + 1] == K8S_POOL
        and args[args.index("--type") + 1] == "kubernetes"
    )
    role = docs[("Role", worker["serviceAccountName"])]
    assert any("jobs" in r["resources"] and "create" in r["verbs"] for r in role["rules"])
    assert {d["metadata"].get("namespace", defaults["namespace"]) for d in docs.values()} == {
        defaults["namespace"]
    }
