"""The production stack of infra/docker-compose.yml on this Docker host: every image built here
(none pulled), started, waited on until healthy, and taken down with nothing left behind.

    python -m infra.compose up        # build what is missing, `up -d`, wait until healthy (make stack-up)
    python -m infra.compose down      # `down -v`: no container, network or volume left (make stack-down)
    python -m infra.compose build     # only the images and the env file var/compose/<project>.env
    python -m infra.compose command   # this stack's compose command line: $(...) ps, logs -f, ...

Works with Compose v2 (``docker compose``) and v1 (``docker-compose``, Debian's package),
whichever answers. Images are tagged by content (their recipe under infra/images/ and the base
image's id) and built only when that tag is missing, so a second ``up`` builds nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from infra import image
from infra.ports import port_is_free

COMPOSE_FILE = image.INFRA / "docker-compose.yml"
PUBLIC_FILE = image.INFRA / "docker-compose.public.yml"
IMAGES = image.INFRA / "images"
STATE_DIR = image.PROJECT_ROOT / "var" / "compose"
WORKER_ENV_EXAMPLE = image.INFRA / "worker.env.example"
FLOW_UID = 10001  # the flow image's user (infra/Dockerfile), reads the Docker runs' worker.env
# The images the stack needs besides the flow image: a folder of infra/images/ each, and the
# public image that can stand in for it (--public-images, infra/docker-compose.public.yml).
STACK_IMAGES = {
    "postgres": "postgres:15-bookworm",
    "redis": "redis:7-bookworm",
    "s3": "chrislusf/seaweedfs:4.48",
}
ONE_SHOT = {"prefect-migrate", "btc-setup"}  # run to completion; everything else keeps running
WORKER_POOLS = ("btc-process", "btc-docker")
SECRET_KEYS = ("PREFECT_AUTH_STRING", "POSTGRES_PASSWORD", "S3_SECRET_KEY")


def compose_command() -> list[str]:
    """``docker compose`` where the v2 plugin answers, else ``docker-compose`` (v1)."""
    if not shutil.which("docker"):
        raise SystemExit("no docker command here: sudo infra/provision.sh installs Docker")
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if v2.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise SystemExit(
        "no Docker Compose here: sudo infra/provision.sh installs Debian's docker-compose"
    )


def recipe_tag(name: str, base_image: str) -> str:
    """``btc-<name>:<hash>`` of the files of infra/images/<name>/ and the base image's id."""
    digest = hashlib.sha256(image.docker_id(base_image).encode())
    for path in sorted(p for p in (IMAGES / name).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(IMAGES)).encode() + b"\0" + path.read_bytes())
    return f"btc-{name}:{digest.hexdigest()[:12]}"


def build_stack_image(name: str, base_image: str) -> image.Build:
    """The image of infra/images/<name>/, built only if its content tag is missing."""
    tag = recipe_tag(name, base_image)
    if image.image_exists(tag):
        return image.Build(tag, 0.0, image.image_size(tag), reused=True)
    folder = IMAGES / name
    return image.docker_build(tag, folder / "Dockerfile", folder, base_image)


def build_images(
    public_images: bool = False, flow: image.Build | None = None
) -> tuple[dict[str, str], list[image.Build]]:
    """Every image of the stack (the flow image unless ``flow`` is given): the env variables
    naming them, and what was built. ``public_images``: the public ones stand in (pulled by
    compose), the flow image is built from the public Python base."""
    base = image.PUBLIC_BASE if public_images else image.base_for()
    flow = flow or image.build(base_image=base)
    built = [flow]
    tags = {}
    for name, public in STACK_IMAGES.items():
        if public_images:
            tags[name] = public
        else:
            built.append(build_stack_image(name, base))
            tags[name] = built[-1].image
    variables = {
        "BTC_IMAGE_TAG": flow.image.split(":", 1)[1],
        **{f"BTC_{name.upper()}_IMAGE": tag for name, tag in tags.items()},
    }
    return variables, built


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (no quotes, # comments)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def write_private(path: Path, text: str, group: int | None = None) -> None:
    """Write a file only its owner (and ``group``, if given and we are root) can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    if group is not None:
        if os.geteuid() == 0:
            os.chown(path, -1, group)
            path.chmod(0o640)
        else:
            path.chmod(0o644)  # the flow user must read it, and only root can give it the group


def worker_env(access_key: str, secret_key: str) -> str:
    """infra/worker.env.example with the stack's S3 keys, for the Docker runs' containers."""
    keys = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    lines = []
    for line in WORKER_ENV_EXAMPLE.read_text().splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={keys[name]}" if name in keys else line)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Stack:
    """One Compose project of infra/docker-compose.yml and its env file in var/compose/."""

    project: str = "btc"
    public_images: bool = False

    @property
    def env_file(self) -> Path:
        return STATE_DIR / f"{self.project}.env"

    @property
    def secrets_dir(self) -> Path:
        """The host folder the Docker pool mounts at /run/btc in each flow container."""
        return STATE_DIR / f"{self.project}-secrets"

    @property
    def env(self) -> dict[str, str]:
        return read_env(self.env_file)

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.env['BTC_UI_PORT']}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.env['BTC_S3_PORT']}"

    @property
    def data_volume(self) -> str:
        return self.env["BTC_DATA_VOLUME"]

    def command(self) -> list[str]:
        files = [COMPOSE_FILE, *([PUBLIC_FILE] if self.public_images else [])]
        flags = [arg for f in files for arg in ("-f", str(f))]
        return [*compose_command(), "--env-file", str(self.env_file), "-p", self.project, *flags]

    def compose(self, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a compose command on this stack; the env file alone sets its variables."""
        clean = {k: v for k, v in os.environ.items() if k not in read_env(self.env_file)}
        return subprocess.run(
            [*self.command(), *args],
            env=clean,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def configure(
        self,
        images: dict[str, str],
        ui_port: int | None = None,
        s3_port: int | None = None,
        data_volume: str = "",
    ) -> None:
        """Write the env file (image tags, ports, passwords kept from an earlier one: the
        volumes were initialized with them) and the Docker runs' worker.env."""
        old = self.env
        settings = {
            **images,
            "BTC_UI_PORT": str(ui_port or old.get("BTC_UI_PORT", 4200)),
            "BTC_S3_PORT": str(s3_port or old.get("BTC_S3_PORT", 8333)),
            "BTC_DATA_VOLUME": data_volume or old.get("BTC_DATA_VOLUME", "btc-data"),
            "BTC_WORKER_SECRETS_DIR": str(self.secrets_dir),
            "PREFECT_AUTH_STRING": f"admin:{secrets.token_hex(16)}",
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "S3_ACCESS_KEY": "btc",
            "S3_SECRET_KEY": secrets.token_hex(16),
        }
        settings.update({k: old[k] for k in SECRET_KEYS if k in old})
        write_private(self.env_file, "".join(f"{k}={v}\n" for k, v in settings.items()))
        write_private(
            self.secrets_dir / "worker.env",
            worker_env(settings["S3_ACCESS_KEY"], settings["S3_SECRET_KEY"]),
            group=FLOW_UID,
        )
        self.secrets_dir.chmod(0o755)

    def up(self, timeout_s: float = 600) -> float:
        """``up -d``, then wait until healthy; the seconds that took."""
        for port in (self.env["BTC_UI_PORT"], self.env["BTC_S3_PORT"]):
            if not self.containers() and not port_is_free(int(port)):
                raise SystemExit(f"port {port} is taken: choose another with --ui-port/--s3-port")
        start = time.monotonic()
        done = self.compose("up", "-d", timeout_s=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"compose up failed:\n{done.stderr[-3000:]}\n{self.logs()}")
        self.wait_healthy(start + timeout_s)
        return time.monotonic() - start

    def containers(self) -> dict[str, tuple[str, str, int]]:
        """Service -> (status, health, exit code) of this project's containers."""
        listed = image.docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
            capture_output=True, check=True,
        ).stdout.split()  # fmt: skip
        if not listed:
            return {}
        fmt = (
            '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} '
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}"
        )
        out = image.docker("inspect", "--format", fmt, *listed, capture_output=True, check=True)
        rows = (line.split() for line in out.stdout.splitlines())
        return {service: (status, health, int(code)) for service, status, health, code in rows}

    def unhealthy(self) -> list[str]:
        """What is not (yet) as it should be: one-shots exited 0, the others running and
        healthy where they have a healthcheck, a worker online in each pool."""
        services = self.compose("config", "--services").stdout.split()
        states = self.containers()
        waiting = []
        for service in services:
            status, health, code = states.get(service, ("missing", "-", 0))
            if service in ONE_SHOT:
                if status == "exited" and code != 0:
                    raise RuntimeError(f"{service} failed (exit {code}):\n{self.logs(service)}")
                ok = status == "exited"
            else:
                if status in ("exited", "dead") or health == "unhealthy":
                    raise RuntimeError(f"{service} is {status}/{health}:\n{self.logs(service)}")
                ok = status == "running" and health in ("-", "healthy")
            if not ok:
                waiting.append(f"{service} ({status}, {health})")
        return waiting or [f"no worker online in {pool}" for pool in self.offline_pools()]

    def offline_pools(self) -> list[str]:
        """The work pools no worker of the stack polls yet (the API, with basic auth)."""
        user, password = self.env["PREFECT_AUTH_STRING"].split(":", 1)
        offline = []
        for pool in WORKER_POOLS:
            found = httpx.post(
                f"{self.ui_url}/api/work_pools/{pool}/workers/filter",
                json={},
                auth=(user, password),
                timeout=10,
            )
            if found.status_code != 200 or not any(w["status"] == "ONLINE" for w in found.json()):
                offline.append(pool)
        return offline

    def wait_healthy(self, deadline: float) -> None:
        while waiting := self.unhealthy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy: {', '.join(waiting)}\n{self.logs()}")
            time.sleep(1)

    def logs(self, service: str = "", lines: int = 40) -> str:
        done = self.compose("logs", "--no-color", "--tail", str(lines), *filter(None, [service]))
        return done.stdout[-6000:]

    def down(self) -> None:
        """``down -v``: containers, the network and every volume of the stack; the env file
        and the secrets folder go too (the next ``up`` starts from nothing)."""
        if not self.env_file.exists():
            return
        done = self.compose("down", "-v", "--remove-orphans", "--timeout", "20")
        if done.returncode != 0:
            raise RuntimeError(f"compose down failed:\n{done.stderr[-3000:]}")
        self.env_file.unlink()
        shutil.rmtree(self.secrets_dir, ignore_errors=True)

    def leftovers(self, data_volume: str) -> list[str]:
        """Containers, networks and volumes of this project (and its data volume) that exist."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind, extra in (
            ("container", ["ps", "-a"]),
            ("network", ["network", "ls"]),
            ("volume", ["volume", "ls"]),
        ):
            out = image.docker(*extra, "-q", "--filter", label, capture_output=True, check=True)
            found += [f"{kind} {name}" for name in out.stdout.split()]
        if image.docker("volume", "inspect", data_volume, capture_output=True).returncode == 0:
            found.append(f"volume {data_volume}")
        return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "build", "command"])
    parser.add_argument("--project", default="btc", help="Compose project name (default btc)")
    parser.add_argument("--ui-port", type=int, help="published UI/API port (default 4200)")
    parser.add_argument("--s3-port", type=int, help="published S3 port (default 8333)")
    parser.add_argument(
        "--data-volume", default="", help="the DuckDB volume's name (default btc-data)"
    )
    parser.add_argument(
        "--public-images",
        action="store_true",
        help=f"pull {', '.join(STACK_IMAGES.values())} instead of building (needs a registry)",
    )
    args = parser.parse_args()
    stack = Stack(args.project, args.public_images)
    if args.command == "command":
        print(" ".join(stack.command()))
        return 0
    if not shutil.which("docker") or image.docker("info", capture_output=True).returncode != 0:
        raise SystemExit(
            "no Docker daemon answers: sudo infra/provision.sh installs and starts one"
        )
    if args.command == "down":
        if not stack.env_file.exists():
            print(f"{args.project}: not up (no {stack.env_file})")
            return 0
        data_volume = stack.data_volume
        stack.down()
        left = stack.leftovers(data_volume)
        print(f"left behind: {', '.join(left)}" if left else f"{args.project}: nothing left")
        return 1 if left else 0
    variables, built = build_images(args.public_images)
    for done in built:
        print(done.summary())
    stack.configure(variables, args.ui_port, args.s3_port, args.data_volume)
    if args.command == "build":
        print(f"env file: {stack.env_file}\ncompose: {' '.join(stack.command())}")
        return 0
    seconds = stack.up()
    print(f"healthy {seconds:.0f} s after `up`: Prefect UI {stack.ui_url}")
    print(
        f"log in with {stack.env['PREFECT_AUTH_STRING']} (in {stack.env_file}); S3 {stack.s3_url}"
    )
    print("stop and remove everything: make stack-down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
