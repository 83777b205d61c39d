"""A highly available Prefect control plane on this machine, as supervised processes.

    python -m deployments.ha up        # migrate, then HAProxy :4700 -> API replicas :4702, :4703
                                       # (--no-services), services, exporter :4704, Prometheus
                                       # :4705; then pools, blocks, automations, deploy --all
    python -m deployments.ha status    # the processes, and each replica as HAProxy sees it
    python -m deployments.ha migrate   # `prefect server database upgrade -y`, nothing else
    python -m deployments.ha down

Workers and the UI use the balancer: ``PREFECT_API_URL=http://127.0.0.1:4700/api``. The Prefect
settings are deployments/control-plane.env (PostgreSQL, Redis messaging, metrics, retention);
your ``PREFECT_*`` variables win over it. supervisord (deployments/supervisord.conf) starts again
whatever dies. State, logs and sockets live in ``var/ha`` (``--dir``); ``--port`` moves the six
consecutive ports (seven with ``--own-redis``: a redis-server of the stack's own instead of the
one of control-plane.env). See docs/operations.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import httpx
import yaml
from dotenv import dotenv_values

from btc_core.files import write_atomically
from btc_core.settings import PROJECT_ROOT
from deployments.deploy import setup_and_deploy
from deployments.processes import BIN, prefect_env, stop, wait_until_ok
from deployments.processes import wait_for_api as wait_for_health

HERE = Path(__file__).resolve().parent
ENV_FILE = HERE / "control-plane.env"
SUPERVISORD_CONF = HERE / "supervisord.conf"
HAPROXY_CFG = PROJECT_ROOT / "infra" / "haproxy" / "haproxy.cfg"
PROMETHEUS_CFG = PROJECT_ROOT / "infra" / "prometheus" / "prometheus.yml"
HA_DIR = PROJECT_ROOT / "var" / "ha"
BASE_PORT = 4700
REPLICAS = ("api1", "api2")
BACKEND = "prefect_api"  # the HAProxy backend of the replicas


class Ports(NamedTuple):
    """Consecutive ports: balancer, HAProxy stats, the replicas, exporter, Prometheus, and a
    redis-server of the stack's own if asked for (--own-redis)."""

    lb: int
    stats: int
    api1: int
    api2: int
    exporter: int
    prometheus: int
    redis: int

    @classmethod
    def starting_at(cls, base: int = BASE_PORT) -> Ports:
        return cls(*range(base, base + len(cls._fields)))

    @property
    def base(self) -> int:
        return self.lb

    def replica(self, name: str) -> int:
        if name not in REPLICAS:  # any other field is a port too, but not a replica's
            raise ValueError(f"{name!r} is not a replica: {', '.join(REPLICAS)}")
        return getattr(self, name)

    def all(self, own_redis: bool = False) -> list[int]:
        return list(self) if own_redis else list(self)[:-1]


@dataclass
class HaStack:
    """Where a stack runs and its supervisord's PID (saved in ``folder/ha.json``)."""

    folder: Path
    ports: Ports
    supervisord_pid: int = 0

    def url_of(self, service: str) -> str:
        """The URL of one of ``Ports``' services: lb, stats, exporter, prometheus."""
        return f"http://127.0.0.1:{getattr(self.ports, service)}"

    @property
    def url(self) -> str:
        """The balancer: the Prefect UI and API, through HAProxy."""
        return self.url_of("lb")

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def home(self) -> Path:
        """PREFECT_HOME of clients started for this stack (setup, deploy)."""
        return self.folder / "home"

    def replica_api_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports.replica(name)}/api"

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"supervisord_pid": self.supervisord_pid, "base_port": self.ports.base}
        write_atomically(self.folder / "ha.json", json.dumps(state, indent=2).encode())

    @classmethod
    def load(cls, folder: Path, ports: Ports | None = None) -> HaStack:
        path = folder / "ha.json"
        if not path.exists():
            return cls(folder, ports or Ports.starting_at())
        state = json.loads(path.read_text())
        return cls(folder, Ports.starting_at(state["base_port"]), state["supervisord_pid"])

    def running(self) -> bool:
        if not self.supervisord_pid:
            return False
        try:
            os.kill(self.supervisord_pid, 0)
        except ProcessLookupError:
            return False
        return True

    def env(self, own_redis: bool = False) -> dict[str, str]:
        """The environment of every control-plane process: control-plane.env, then your
        ``PREFECT_*`` variables, then this stack's addresses for supervisord and HAProxy; with
        ``own_redis``, messaging on a redis-server of the stack's own."""
        settings = {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}
        settings.update({k: v for k, v in os.environ.items() if k.startswith("PREFECT_")})
        settings.setdefault("PREFECT_UI_API_URL", self.api_url)
        redis_port = self.ports.redis
        if own_redis:
            settings.update(
                PREFECT_REDIS_MESSAGING_HOST="127.0.0.1",
                PREFECT_REDIS_MESSAGING_PORT=str(redis_port),
                PREFECT_REDIS_MESSAGING_DB="0",
                PREFECT_SERVER_DOCKET_URL=f"redis://127.0.0.1:{redis_port}/1",
            )
        env = prefect_env(self.home, **settings)
        for name in REPLICAS:
            env[f"BTC_{name.upper()}"] = f"127.0.0.1:{self.ports.replica(name)}"
            env[f"BTC_{name.upper()}_PORT"] = str(self.ports.replica(name))
        env.update(
            BTC_HA_DIR=str(self.folder),
            BTC_PROJECT=str(PROJECT_ROOT),
            BTC_PREFECT=str(BIN / "prefect"),
            BTC_PYTHON=sys.executable,
            BTC_HA_API_URL=self.api_url,
            BTC_HA_BIND=f"127.0.0.1:{self.ports.lb}",
            BTC_HA_STATS_BIND=f"127.0.0.1:{self.ports.stats}",
            BTC_HAPROXY_CFG=str(HAPROXY_CFG),
            BTC_EXPORTER_PORT=str(self.ports.exporter),
            BTC_PROMETHEUS_BIND=f"127.0.0.1:{self.ports.prometheus}",
            BTC_PROMETHEUS_CFG=str(self.folder / "prometheus.yml"),
            BTC_OWN_REDIS=str(own_redis).lower(),
            BTC_REDIS_PORT=str(redis_port),
        )
        return env


def port_free(port: int) -> bool:
    """Nobody listens on ``port`` (closed connections in TIME_WAIT do not count: the servers
    bind with SO_REUSEADDR, so they can take it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(first: int, size: int, last: int = 4799) -> int:
    """The first of ``size`` consecutive free ports in ``first``..``last``."""
    for base in range(first, last - size + 2):
        if all(port_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports in {first}..{last}")


def prometheus_config(ports: Ports, interval: str | None = None) -> dict:
    """infra/prometheus/prometheus.yml with this stack's ports (and scrape/evaluation
    ``interval`` if given)."""
    config = yaml.safe_load(PROMETHEUS_CFG.read_text())
    targets = {
        "prefect-api": [f"127.0.0.1:{ports.replica(n)}" for n in REPLICAS],
        "haproxy": [f"127.0.0.1:{ports.stats}"],
        "btc-pipeline": [f"127.0.0.1:{ports.exporter}"],
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config["rule_files"] = [str(PROMETHEUS_CFG.parent / name) for name in config["rule_files"]]
    if interval:
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    return config


def migrate(env: dict[str, str]) -> float:
    """``prefect server database upgrade -y``: the one step that changes the schema. Returns
    its duration in seconds."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "server", "database", "upgrade", "-y"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise SystemExit(f"migration failed: {lines[-1] if lines else result.returncode}")
    return time.monotonic() - started


def up(folder: Path, ports: Ports, interval: str | None = None, own_redis: bool = False) -> HaStack:
    """Migrate, start everything under supervisord, wait until it answers, set up and deploy;
    with ``own_redis``, on a redis-server of the stack's own."""
    stack = HaStack.load(folder, ports)
    if stack.running():
        print(f"already running: {stack.url} (supervisord PID {stack.supervisord_pid})")
        return stack
    stack = HaStack(folder, ports)
    busy = [p for p in ports.all(own_redis) if not port_free(p)]
    if busy:
        raise SystemExit(f"port(s) {busy} are busy; stop what holds them or pass --port")
    folder.mkdir(parents=True, exist_ok=True)
    env = stack.env(own_redis)
    config = prometheus_config(ports, interval)
    write_atomically(folder / "prometheus.yml", yaml.safe_dump(config, sort_keys=False).encode())
    print(f"migrated in {migrate(env):.1f} s")
    proc = subprocess.Popen(
        ["supervisord", "-n", "-c", str(SUPERVISORD_CONF)],
        env=env,
        stdout=(folder / "supervisord.out").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=PROJECT_ROOT,
    )
    stack.supervisord_pid = proc.pid
    stack.save()
    try:
        for name in REPLICAS:
            wait_for_health(stack.replica_api_url(name), proc=proc)
        wait_for_health(stack.api_url, proc=proc)
        wait_until_ok(f"{stack.url_of('prometheus')}/-/ready")
        wait_until_ok(f"{stack.url_of('exporter')}/metrics", timeout_s=120)
    except (RuntimeError, TimeoutError) as exc:
        down(folder)
        raise SystemExit(f"the control plane did not come up ({exc}); see {folder}/*.log") from None
    try:
        setup_and_deploy(stack.home, stack.api_url)
    except RuntimeError as exc:
        raise SystemExit(
            f"{exc}\nthe control plane keeps running; stop it with: make ha-down"
        ) from None
    print(
        f"Prefect UI and API through HAProxy: {stack.url}  (stats: {stack.url_of('stats')}/stats)"
    )
    print(f"Prometheus: {stack.url_of('prometheus')}  exporter: {stack.url_of('exporter')}/metrics")
    print(f"workers: PREFECT_API_URL={stack.api_url} workers/start-process-worker.sh btc-process")
    return stack


def ctl(folder: Path, *args: str) -> str:
    """``supervisorctl`` against the stack in ``folder``."""
    result = subprocess.run(
        ["supervisorctl", "-c", str(SUPERVISORD_CONF), *args],
        env={**os.environ, "BTC_HA_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout


def program_pids(folder: Path) -> dict[str, int]:
    """PID of each running program, by name."""
    pids = {}
    for line in ctl(folder, "status").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "RUNNING" and parts[2] == "pid":
            pids[parts[0]] = int(parts[3].rstrip(","))
    return pids


def backend_servers(stack: HaStack) -> dict[str, dict[str, str]]:
    """Each replica as HAProxy sees it (its stats CSV row: status, stot, chkdown, ...)."""
    text = httpx.get(f"{stack.url_of('stats')}/stats;csv", timeout=10).text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {r["svname"]: r for r in rows if r["pxname"] == BACKEND and r["svname"] in REPLICAS}


def haproxy_command(stack: HaStack, command: str) -> str:
    """One command on HAProxy's runtime API, e.g. ``set server prefect_api/api2 state maint``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stack.folder / "haproxy.sock"))
        sock.sendall(f"{command}\n".encode())
        return sock.makefile().read()


def down(folder: Path) -> None:
    """Stop supervisord (it stops its programs); then any program it left behind, by PID."""
    stack = HaStack.load(folder)
    if not stack.running():
        print("not running")
        return
    children = program_pids(folder)
    stop(stack.supervisord_pid, sigints=1, grace_s=90)
    for pid in children.values():
        stop(pid, sigints=1, grace_s=10)
    stack.supervisord_pid = 0
    stack.save()
    print(f"stopped supervisord and {', '.join(children) or 'no programs'}")


def status(folder: Path) -> int:
    stack = HaStack.load(folder)
    if not stack.running():
        print("not running (start with: make ha-up)")
        return 1
    print(ctl(folder, "status"), end="")
    for name, row in backend_servers(stack).items():
        print(
            f"haproxy {BACKEND}/{name}: {row['status']}, {row['stot']} requests, "
            f"{row['chkdown']} times down"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "migrate"])
    parser.add_argument("--dir", type=Path, default=HA_DIR, help="state folder (default var/ha)")
    parser.add_argument("--port", type=int, default=BASE_PORT, help="first of six ports")
    parser.add_argument("--scrape-interval", help="Prometheus scrape and evaluation interval")
    parser.add_argument(
        "--own-redis", action="store_true", help="a redis-server of its own (port base + 6)"
    )
    args = parser.parse_args()
    if shutil.which("supervisord") is None and args.command == "up":
        raise SystemExit("supervisord, haproxy and prometheus are missing: infra/provision-ops.sh")
    folder = args.dir.resolve()
    if args.command == "up":
        up(folder, Ports.starting_at(args.port), args.scrape_interval, args.own_redis)
        return 0
    if args.command == "down":
        down(folder)
        return 0
    if args.command == "migrate":
        print(f"migrated in {migrate(HaStack(folder, Ports.starting_at(args.port)).env()):.1f} s")
        return 0
    return status(folder)


if __name__ == "__main__":
    raise SystemExit(main())
