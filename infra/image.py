"""Build the flow runtime image: the local debootstrap base once, then ``infra/Dockerfile``.

    python -m infra.image build            # btc-flow:<version>-<git sha>
    python -m infra.image build --base-image python:3.11-slim-bookworm   # choose the base
    python -m infra.image tag              # the tag the Docker work pool uses by default

The tag is the project version plus the git revision (``-dirty`` when the image's inputs changed),
never only ``latest``: the Docker work pool's ``IfNotPresent`` pull policy then never tries a
registry for an image that exists only on the worker's machine. The base is the local debootstrap
image where it exists or can be made (root with debootstrap: no registry needed), else the public
``python:3.11-slim-bookworm``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INFRA = PROJECT_ROOT / "infra"
REPOSITORY = "btc-flow"
LOCAL_BASE = "btc-base:bookworm-py3.11"
PUBLIC_BASE = "python:3.11-slim-bookworm"
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")


def version() -> str:
    """The project version from pyproject.toml."""
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def image_inputs(root: Path = PROJECT_ROOT) -> list[str]:
    """What the image is built from: infra/Dockerfile and its build context (the paths that
    .dockerignore lets through)."""
    allowed = (root / ".dockerignore").read_text().splitlines()
    return ["infra/Dockerfile", *(line[1:] for line in allowed if line.startswith("!"))]


def git_revision(root: Path = PROJECT_ROOT) -> str | None:
    """Short commit id, ``-dirty`` if the image's inputs differ from it (a screenshot written by
    the UI tests is not a new image); None outside a git checkout."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # read-only: never touch the index

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", *image_inputs(root)))
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def flow_image(repository: str = REPOSITORY) -> str:
    """``btc-flow:<version>-<revision>`` (``btc-flow:<version>`` outside git)."""
    revision = git_revision()
    return f"{repository}:{version()}-{revision}" if revision else f"{repository}:{version()}"


def extra_ca_certs(folder: Path = LOCAL_CA_DIR) -> str:
    """CA certificates added locally on this host (a TLS-intercepting proxy), as PEM text."""
    if not folder.is_dir():
        return ""
    return "\n".join(p.read_text() for p in sorted(folder.glob("*.crt")))


def docker(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI (legacy builder: works without buildx, with any engine >= 20.10)."""
    env = {**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")}
    return subprocess.run(["docker", *args], env=env, text=True, **kwargs)  # type: ignore[call-overload]


def image_exists(image: str) -> bool:
    return docker("image", "inspect", image, capture_output=True).returncode == 0


def docker_id(image: str) -> str:
    """The id (content digest) of a local image."""
    out = docker("image", "inspect", image, "--format", "{{.Id}}", capture_output=True, check=True)
    return out.stdout.strip()


def image_size(image: str) -> int:
    """Size of an image in bytes."""
    out = docker(
        "image", "inspect", image, "--format", "{{.Size}}", capture_output=True, check=True
    )
    return int(out.stdout.strip())


def ensure_local_base(tag: str = LOCAL_BASE) -> None:
    """The debootstrap base image, built once (infra/make-base-image.sh keeps an existing tag)."""
    if not image_exists(tag):
        subprocess.run(["bash", str(INFRA / "make-base-image.sh"), tag], check=True)


def default_base_image() -> str:
    """The local debootstrap base if it exists or this host can make it, else the public one."""
    can_make = os.geteuid() == 0 and shutil.which("debootstrap") is not None
    return LOCAL_BASE if can_make or image_exists(LOCAL_BASE) else PUBLIC_BASE


@dataclass(frozen=True)
class Build:
    """A built image: its tag, how long the build took, how big it is; ``reused`` when the tag
    existed and nothing was built."""

    image: str
    seconds: float
    size_bytes: int
    reused: bool = False

    def summary(self) -> str:
        done = "present, not rebuilt" if self.reused else f"built in {self.seconds:.1f} s"
        return f"{self.image}: {self.size_bytes / 1e6:.0f} MB, {done}"


def docker_build(
    image: str,
    dockerfile: Path,
    context: Path,
    base_image: str,
    quiet: bool = True,
    no_cache: bool = False,
) -> Build:
    """``docker build`` on the host's network (the build talks to PyPI and Debian's mirror
    through it), with ``BASE_IMAGE`` and this host's extra CA certificates as build args."""
    start = time.monotonic()
    result = docker(
        "build",
        "--network",
        "host",
        "--file",
        str(dockerfile),
        "--tag",
        image,
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "--build-arg",
        f"EXTRA_CA_CERTS={extra_ca_certs()}",
        *(["--no-cache"] if no_cache else []),
        str(context),
        capture_output=quiet,
    )
    if result.returncode != 0:
        detail = f"\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}" if quiet else ""
        raise RuntimeError(f"docker build of {image} failed{detail}")
    return Build(image, time.monotonic() - start, image_size(image))


def base_for(base_image: str | None = None) -> str:
    """``base_image``, or the default base (the local one is made first if missing)."""
    base_image = base_image or default_base_image()
    if base_image == LOCAL_BASE:
        ensure_local_base(base_image)
    return base_image


def build(
    image: str | None = None,
    base_image: str | None = None,
    quiet: bool = True,
    no_cache: bool = False,
) -> Build:
    """Build infra/Dockerfile from the repository root (layers cached unless ``no_cache``)."""
    return docker_build(
        image or flow_image(),
        INFRA / "Dockerfile",
        PROJECT_ROOT,
        base_for(base_image),
        quiet,
        no_cache,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    built = sub.add_parser("build", help="build the flow image (and the local base if needed)")
    built.add_argument("--tag", help="image reference (default: btc-flow:<version>-<git sha>)")
    built.add_argument(
        "--base-image",
        help=f"base image (default: {LOCAL_BASE} made with debootstrap if possible, else {PUBLIC_BASE})",
    )
    built.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    sub.add_parser("tag", help="print the default image reference")
    args = parser.parse_args()
    if args.command == "tag":
        print(flow_image())
        return 0
    print(build(args.tag, args.base_image, quiet=False, no_cache=args.no_cache).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
