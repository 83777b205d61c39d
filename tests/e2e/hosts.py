"""The worker side of the hybrid tests: a worker host's folders, S3 on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import duckdb
from moto.server import ThreadedMotoServer

from btc_core.pipeline import run_cycle
from btc_core.settings import Settings
from btc_core.transform import daily_rows, export_json
from tests.crash import HOOKS

FLOW_UID = 10001  # the non-root user of the flow image (infra/Dockerfile, APP_UID)
CONTAINER_HOOKS = "/opt/btc-test-hooks"


@dataclass
class WorkerHost:
    """What a Docker worker's machine holds: the DuckDB folder and the secrets folder.

    ``job_variables()`` mounts them like the pool's defaults (``btc-data:/data`` and
    ``/etc/btc:/run/btc:ro``) do on a real host; only their paths reach the control plane.
    """

    root: Path

    def __post_init__(self) -> None:
        for folder in (self.data, self.secrets):
            folder.mkdir(parents=True, exist_ok=True)
        os.chown(self.data, FLOW_UID, FLOW_UID)  # the container writes as the image's user

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def db(self) -> Path:
        return self.data / "btc.duckdb"

    def write_env(self, values: dict[str, str]) -> None:
        """The worker's ``worker.env`` (Docker --env-file syntax), readable by the flow user."""
        path = self.secrets / "worker.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o644)

    def job_variables(self, crash_hook: bool = False) -> dict[str, list[str]]:
        """The pool's volumes for this host; with ``crash_hook`` also the test-only start-up
        hook of the crash drills (tests/crash.py: with BTC_TEST_PAUSE_BEFORE_COMMIT_S and
        PYTHONPATH=CONTAINER_HOOKS in worker.env, loads pause inside their transaction)."""
        volumes = [f"{self.data}:/data", f"{self.secrets}:/run/btc:ro"]
        if crash_hook:
            volumes.append(f"{HOOKS}:{CONTAINER_HOOKS}:ro")
        return {"volumes": volumes}

    def counts(self) -> tuple[int, int]:
        """Observations and distinct timestamps in the volume's DuckDB file."""
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute("SELECT count(*), count(DISTINCT ts) FROM observations").fetchone()


@dataclass(frozen=True)
class S3:
    """An S3-compatible endpoint (moto's server mode) with one bucket and its keys."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def object_keys(self) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in listed.get("Contents", [])]

    def worker_env(self) -> dict[str, str]:
        """What a worker needs to write results there (the block itself holds no keys)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    @classmethod
    @contextmanager
    def start(cls, bucket: str, access_key: str, secret_key: str) -> Iterator[S3]:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        s3 = cls(f"http://{host}:{port}", bucket, access_key, secret_key)
        s3.client().create_bucket(Bucket=bucket)
        try:
            yield s3
        finally:
            server.stop()


def flow_run_containers(flow_run_id: object, *, running: bool = False) -> list[str]:
    """Ids of the containers of one flow run (prefect-docker labels them)."""
    label = f"label=io.prefect.flow-run-id={flow_run_id}"
    listed = subprocess.run(
        ["docker", "ps", "-q", *([] if running else ["-a"]), "--filter", label],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def kill_flow_run_containers(flow_run_id: object) -> list[str]:
    """``docker kill`` the running containers of one flow run."""
    found = flow_run_containers(flow_run_id, running=True)
    for container in found:
        subprocess.run(["docker", "kill", container], capture_output=True, check=False)
    return found


def export_of(db: Path) -> str:
    """The output contract of a DuckDB file, read without taking the writer lock."""
    with duckdb.connect(str(db), read_only=True) as con:
        return export_json(daily_rows(con))


def plain_cycle_export(folder: Path) -> str:
    """The cycle with no orchestrator, in ``folder``: what every worker host's DuckDB must hold."""
    db = folder / "btc.duckdb"
    run_cycle(Settings.from_env(env={}, db_path=db, notify="none"))
    return export_of(db)
