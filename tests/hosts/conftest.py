"""Worker hosts as containers: machines that share nothing with the control plane but its API.

One session of this folder starts, once each:

- the host image (tests/hosts/Dockerfile: the stock Debian 12 server of the fresh-machine test
  plus systemd), built only when its inputs changed (the tag is a hash of them);
- the code source: ``git daemon`` on 127.0.0.1 serving this checkout's repository (committed
  work only, as a real git remote would);
- the control plane: a real ``prefect server`` on 127.0.0.1, set up and deployed as ``make up``
  does (``deployments.deploy.setup_and_deploy``), with the test's crash-detection settings.

The hosts run with the host's network (they reach 127.0.0.1), never with a folder of this
machine mounted: each clones the project and installs it itself. The one thing they share is a
Docker volume used as uv's package cache (``UV_CACHE_VOLUME``, kept between sessions), to keep
the folder affordable; an empty cache is the fresh-machine test's case.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from btc_core.settings import PROJECT_ROOT
from deployments.deploy import setup_and_deploy
from deployments.runs import stop_schedules
from deployments.setup import ensure_automations
from infra.ports import pick_port
from tests.docker import docker_answers
from tests.prefect.conftest import Server, _serve

HERE = Path(__file__).parent
BASE_IMAGE = "btc-fresh:bookworm"  # the lead's stock server (tests/hosts/test_fresh_machine.py)
BASE_PACKAGES = "python3,make,git,ca-certificates"
HOST_IMAGE = "btc-host"
UV_CACHE_VOLUME = "btc-hosts-uv-cache"
# This workplace intercepts TLS: its proxy's CA certificates go into the image (Dockerfile).
EXTRA_CA = Path("/usr/local/share/ca-certificates")
PREFIX = f"btc-hosts-{os.getpid()}"  # container names of this session
USER = "btc"
HOME = f"/home/{USER}"
# Crash detection in the tests: heartbeats every 30 s (Prefect's minimum), a run is a zombie after
# 60 s without one. Production (docs/hybrid.md): 180 s and 540 s, or 30 s and 90 s.
HEARTBEAT_S = 30
ZOMBIE_AFTER_S = 60
POOL = "btc-process"
REMOVING: list[subprocess.Popen[bytes]] = []  # `docker rm` of this session's hosts, under way
FIGURES: dict[str, str] = {}  # session-wide measurements (the image build), reported by the tests


def docker(*args: str, timeout_s: float = 600, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {shlex.join(args)}: {done.returncode}\n{done.stderr[-3000:]}")
    return done.stdout


@dataclass
class Host:
    """A worker host: a container with its own hostname, the host's network, no mounts."""

    container: str
    hostname: str
    systemd: bool
    removed: bool = field(default=False)

    def sh(
        self,
        script: str,
        user: str = USER,
        timeout_s: float = 300,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run ``script`` with sh inside the host as ``user`` (a login shell's HOME), like ssh."""
        flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
        workdir = HOME if user == USER else "/"
        done = subprocess.run(
            [
                "docker",
                "exec",
                "-u",
                user,
                "-w",
                workdir,
                *flags,
                self.container,
                "sh",
                "-c",
                script,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{self.hostname}: {script!r} exited {done.returncode}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def put(self, path: str, text: str, mode: str = "644") -> None:
        """Write a file inside the host as root (what an admin does with sudoedit)."""
        folder = str(Path(path).parent)
        subprocess.run(
            ["docker", "exec", "-i", self.container, "sh", "-c",
             f"mkdir -p {folder} && cat > {path} && chmod {mode} {path}"],
            input=text, text=True, check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def clone(self, url: str) -> str:
        """The project as a worker host gets it: ``git clone`` into the user's home."""
        checkout = f"{HOME}/btc-orchestration"
        self.sh(f"git clone -q {url} {checkout}")
        return checkout

    def remove(self) -> None:
        """Kill the host now; its files are deleted in the background (a GB of environment
        takes Docker 10-20 s on a busy machine), waited for at the end of the session."""
        if not self.removed:
            docker("kill", self.container, check=False, timeout_s=60)
            REMOVING.append(
                subprocess.Popen(
                    ["docker", "rm", "-f", "-v", self.container],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.removed = True


def start_host(image: str, role: str, *, systemd: bool = False) -> Host:
    """A container from the host image: systemd as PID 1 (a server with a service manager), or
    a plain idle PID 1 (a machine whose processes someone started by hand)."""
    container, hostname = f"{PREFIX}-{role}", f"host-{role}"
    flags = ["--network=host", f"--hostname={hostname}", f"-v={UV_CACHE_VOLUME}:{HOME}/.cache/uv"]
    if systemd:
        # A real systemd as PID 1 on this cgroup-v1 machine. --privileged would ask for every
        # capability, and this sandbox's dockerd lacks CAP_SYS_RESOURCE ("unable to apply caps:
        # operation not permitted"): all capabilities but that one do the same for systemd.
        flags += [
            "--cap-add=ALL", "--cap-drop=SYS_RESOURCE",
            "--security-opt=seccomp=unconfined", "--security-opt=apparmor=unconfined",
            "--cgroupns=host", "-v=/sys/fs/cgroup:/sys/fs/cgroup",
            "--tmpfs=/run", "--tmpfs=/run/lock", "--tmpfs=/tmp",
            "--stop-signal=SIGRTMIN+3",
        ]  # fmt: skip
        command: list[str] = []
    else:
        command = ["sleep", "infinity"]
    docker("run", "-d", "--name", container, *flags, image, *command)
    host = Host(container, hostname, systemd)
    try:
        # the cache volume is created by root; the user owns what is under its home
        host.sh(f"chown {USER}:{USER} {HOME}/.cache {HOME}/.cache/uv", user="root")
        if systemd:
            host.sh(
                "for i in $(seq 100); do s=$(systemctl is-system-running); "
                'case "$s" in running|degraded) exit 0;; esac; sleep 0.2; done; '
                'echo "systemd: $s"; exit 1',
                user="root",
                timeout_s=60,
            )
    except BaseException:
        host.remove()
        raise
    return host


@pytest.fixture(scope="session", autouse=True)
def _no_host_left() -> Iterator[None]:
    """At the end of the session, pass or fail: every host of this session removed."""
    yield
    for proc in REMOVING:
        proc.wait(timeout=300)
    if REMOVING or docker_answers():
        left = docker("ps", "-aq", "--filter", f"name=^{PREFIX}-", check=False).split()
        if left:
            docker("rm", "-f", "-v", *left, check=False, timeout_s=300)


def image_inputs() -> list[tuple[str, bytes]]:
    """What the host image is made of: the Dockerfile, the extra CA certificates, the base."""
    base_id = docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).strip()
    inputs = [("Dockerfile", (HERE / "Dockerfile").read_bytes()), ("base", base_id.encode())]
    if EXTRA_CA.is_dir():
        inputs += [(f"ca/{p.name}", p.read_bytes()) for p in sorted(EXTRA_CA.glob("*.crt"))]
    return inputs


@pytest.fixture(scope="session")
def host_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The host image, built once per set of inputs (a content hash in its tag)."""
    if not docker_answers():
        pytest.skip("no Docker daemon: run infra/provision.sh as root")
    if not docker("images", "-q", BASE_IMAGE).strip():
        subprocess.run(
            [str(PROJECT_ROOT / "infra" / "make-base-image.sh"), BASE_IMAGE],
            env={**os.environ, "SUITE": "bookworm", "PACKAGES": BASE_PACKAGES},
            check=True,
            capture_output=True,
            timeout=900,
        )
    inputs = image_inputs()
    digest = hashlib.sha256()
    for name, data in inputs:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    tag = f"{HOST_IMAGE}:{digest.hexdigest()[:16]}"
    if docker("images", "-q", tag).strip():
        FIGURES["image"] = f"host image {tag} reused"
        return tag
    context = tmp_path_factory.mktemp("host-image")
    shutil.copy(HERE / "Dockerfile", context / "Dockerfile")
    (context / "ca-certificates").mkdir()
    for name, data in inputs:
        if name.startswith("ca/"):
            (context / "ca-certificates" / name[3:]).write_bytes(data)
    started = time.monotonic()
    docker("build", "-q", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag, str(context))
    FIGURES["image"] = f"host image {tag} built in {time.monotonic() - started:.0f} s"
    return tag


@pytest.fixture(scope="session")
def uv_cache(host_image: str) -> str:
    """The Docker volume the hosts share as uv's cache (the one thing they share)."""
    docker("volume", "create", UV_CACHE_VOLUME)
    return UV_CACHE_VOLUME


@pytest.fixture(scope="session")
def code_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This checkout's repository behind ``git daemon`` on 127.0.0.1: a git remote the hosts
    reach over the network, with the committed work only."""
    base = tmp_path_factory.mktemp("git-daemon")
    (base / "btc-orchestration.git").symlink_to(PROJECT_ROOT / ".git")
    port = pick_port(9418)
    # git_clone pull steps fetch one commit by its hash, blobless: upload-pack must allow both
    proc = subprocess.Popen(
        ["git", "-c", "uploadpack.allowFilter=true", "-c", "uploadpack.allowAnySHA1InWant=true",
         "daemon", f"--base-path={base}", "--export-all", "--reuseaddr",
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"git://127.0.0.1:{port}/btc-orchestration.git"
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["git", "ls-remote", url, "HEAD"], capture_output=True).returncode:
            assert proc.poll() is None and time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory, code_source: str) -> Iterator[Server]:
    """A self-hosted server (SQLite) on 127.0.0.1, set up and deployed as ``make up`` does, the
    process deployments' code cloned by each run from ``code_source`` (the remote the hosts
    reach: BTC_CODE_REPOSITORY); no schedules (only the runs a test starts); zombies after
    ``ZOMBIE_AFTER_S``."""
    gen = cast("Generator[Server]", _serve(tmp_path_factory.mktemp("control-plane")))
    server = next(gen)
    try:
        with deployer_env(BTC_CODE_SOURCE="git", BTC_CODE_REPOSITORY=code_source):
            setup_and_deploy(server.home, server.api_url, docker=False)
        with server.client() as client:
            stop_schedules(client)
            ensure_automations(client, None, zombie_after_s=ZOMBIE_AFTER_S)
        yield server
    finally:
        gen.close()


@contextmanager
def deployer_env(**values: str) -> Iterator[None]:
    """The deployer's environment variables for a while (``prefect deploy`` reads them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def planted_secrets() -> dict[str, str]:
    """Worker-side secrets with unique values, to look for where they must not be."""
    return {
        "BTC_COINGECKO_API_KEY": f"CG-{uuid.uuid4().hex}",
        "BTC_WEBHOOK_URL": f"http://127.0.0.1:9/services/T{uuid.uuid4().hex}",
    }


def strict_env(secrets: dict[str, str]) -> dict[str, str]:
    """A worker's settings in strict hybrid mode (infra/worker.env.example), its secrets, and
    the test's heartbeat."""
    return {
        "BTC_SECRETS_FROM": "env",
        "BTC_ARTIFACTS": "summary",
        "BTC_NOTIFY": "file",
        "BTC_SOURCE": "replay",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        **secrets,
    }


def pause_env(checkout: str, seconds: float) -> dict[str, str]:
    """Job variables' env of a run that pauses inside its load (tests/hooks/sitecustomize.py,
    from the host's own clone): a run in flight for ``seconds``."""
    return {
        "BTC_TEST_PAUSE_BEFORE_COMMIT_S": f"{seconds:g}",
        "PYTHONPATH": f"{checkout}/tests/hooks",
    }
