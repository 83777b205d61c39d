"""The hybrid setup on this machine: a Prefect server, a process worker and a Docker worker, and
one run of ``btc-hourly-docker`` in a container of the flow image.

    python -m deployments.hybrid up      # flow image, then deployments.stack up, then a Docker worker
    python -m deployments.hybrid demo    # up, run btc-pipeline/btc-hourly-docker, show its data
    python -m deployments.stack down   # stops the workers, then the server (make down)

Needs a Docker daemon (``sudo infra/provision.sh`` installs and starts one). Data goes to the
Docker volume ``btc-data``, which ``make down`` keeps (``docker volume rm btc-data`` removes it).
The Docker pool mounts the worker-side secrets folder into each flow container: /etc/btc where it
exists, else var/stack/secrets (Docker would otherwise create an empty, root-owned /etc/btc).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from deployments import stack
from deployments.processes import start_worker
from deployments.runs import run_now
from infra import image

DEPLOYMENT = "btc-pipeline/btc-hourly-docker"
HOST_SECRETS_DIR = Path("/etc/btc")
LOCAL_SECRETS_DIR = stack.STACK_DIR / "secrets"


def pools_of(pids: list[int]) -> set[str]:
    """The ``--pool`` of each running worker (from its command line)."""
    pools = set()
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--pool" in args:
            pools.add(args[args.index(b"--pool") + 1].decode())
    return pools


def secrets_dir() -> Path:
    """The worker-side secrets folder of the Docker pool (BTC_WORKER_SECRETS_DIR for
    deployments.setup): /etc/btc if this machine has one, else var/stack/secrets, made here."""
    if HOST_SECRETS_DIR.is_dir():
        return HOST_SECRETS_DIR
    LOCAL_SECRETS_DIR.mkdir(parents=True, exist_ok=True)
    return LOCAL_SECRETS_DIR.resolve()


def up(port: int, poll_s: float) -> stack.Stack:
    """The flow image, the server with a process worker, and a Docker worker (once)."""
    if image.docker("info", capture_output=True).returncode != 0:
        raise SystemExit("no Docker daemon answers: run sudo infra/provision.sh (or start Docker)")
    print(f"flow image {image.build().summary()}")
    secrets = os.environ.setdefault("BTC_WORKER_SECRETS_DIR", str(secrets_dir()))
    print(f"Docker runs read worker-side secrets from {secrets}/worker.env (docs/hybrid.md)")
    running = stack.up(port, poll_s, docker=True)
    if "btc-docker" not in pools_of(running.worker_pids):
        worker = start_worker(
            running.home,
            running.api_url,
            "btc-docker",
            stack.STACK_DIR / "docker-worker.log",
            poll_s,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30",
        )
        running.worker_pids.append(worker.pid)
        running.save()
        print(
            f"Docker worker on pool btc-docker (PID {worker.pid}, log var/stack/docker-worker.log)"
        )
    return running


def volume_export(flow_image: str, volume: str = "btc-data") -> list[dict]:
    """The output contract, read from a data volume by a throwaway container."""
    command = ["run", "--rm", "-v", f"{volume}:/data", flow_image, "python", "-m", "btc_core.cli"]
    done = image.docker(*command, "export", capture_output=True, check=True)
    return json.loads(done.stdout)


def demo(port: int, poll_s: float) -> int:
    """Up, then one Docker-pool run: trigger, wait for Completed, show the volume's data."""
    running = up(port, poll_s)
    run = run_now(running.api_url, DEPLOYMENT)
    state = run.state.name if run.state else "unknown"
    print(f"flow run {running.url}/runs/flow-run/{run.id}: {state}")
    if state != "Completed":
        print("see var/stack/docker-worker.log; stop everything with: make down")
        return 1
    print("latest daily averages (UTC), read from the worker's volume btc-data:")
    for day in volume_export(image.flow_image())[-3:]:
        print(f"  {day['day']}  ${day['avg_price_usd']:>10,.2f}  ({day['n_obs']} obs)")
    print(f"\nOpen the UI: {running.url}  (stop everything with: make down)")
    print("The DuckDB file stays in the volume btc-data after make down: docker volume rm btc-data")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "demo"])
    parser.add_argument("--port", type=int, default=stack.DEFAULT_PORT)
    parser.add_argument(
        "--poll", type=float, default=float(os.environ.get("BTC_WORKER_POLL_S", "1"))
    )
    args = parser.parse_args()
    if args.command == "up":
        up(args.port, args.poll)
        return 0
    return demo(args.port, args.poll)


if __name__ == "__main__":
    raise SystemExit(main())
