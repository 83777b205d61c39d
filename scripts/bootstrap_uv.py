"""Find uv, or install a pinned uv where the user can run it, with nothing but Python's stdlib.

    python3 scripts/bootstrap_uv.py    # prints the path of a working uv (installs it if none)

A stock Debian or Ubuntu server has a system Python that refuses ``pip install`` (PEP 668), often
no pip and no venv module, and no uv. This script needs none of them: it takes uv's wheel from the
package index (PEP 691 JSON: ``UV_DEFAULT_INDEX``, ``UV_INDEX_URL`` or ``PIP_INDEX_URL``, else
PyPI), checks it against the SHA-256 pinned below, and unpacks the ``uv`` and ``uvx`` binaries
into ``UV_INSTALL_DIR`` (default ``~/.local/bin``, where uv's own installer puts them; Debian's
and Ubuntu's ``~/.profile`` put that folder on PATH in every new login shell). A ``uv`` already on
PATH, or already in that folder, is used as it is. Used by the Makefiles and the worker scripts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

VERSION = "0.13.9"  # the same as infra/Dockerfile's UV_VERSION
WHEELS = {  # machine -> (wheel file name, SHA-256), from the index's listing of uv 0.13.9
    "x86_64": (
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    "aarch64": (
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    ),
}
JSON_API = "application/vnd.pypi.simple.v1+json"


def default_dir() -> Path:
    return Path.home() / ".local" / "bin"


def install_dir() -> Path:
    return Path(os.environ.get("UV_INSTALL_DIR") or default_dir())


def works(uv: str) -> bool:
    try:
        return subprocess.run([uv, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def found() -> str | None:
    """A working uv on PATH or in the install folder."""
    for candidate in (shutil.which("uv"), str(install_dir() / "uv")):
        if candidate and works(candidate):
            return candidate
    return None


def index_url() -> str:
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return "https://pypi.org/simple"


def wheel_url(index: str, filename: str) -> str:
    """The wheel's address in the index's JSON listing of uv."""
    request = urllib.request.Request(f"{index}/uv/", headers={"Accept": JSON_API})
    with urllib.request.urlopen(request, timeout=60) as answer:
        listing = json.load(answer)
    for entry in listing["files"]:
        if entry["filename"] == filename:
            return urllib.parse.urljoin(f"{index}/uv/", entry["url"])
    raise SystemExit(f"bootstrap_uv: {filename} is not on {index}")


def install() -> str:
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in WHEELS:
        raise SystemExit(
            f"bootstrap_uv: no pinned uv wheel for {sys.platform}/{machine}: install uv "
            "(https://docs.astral.sh/uv/getting-started/installation/) and run this again"
        )
    filename, sha256 = WHEELS[machine]
    index = index_url()
    print(f"installing uv {VERSION} from {index} into {install_dir()}", file=sys.stderr)
    with urllib.request.urlopen(wheel_url(index, filename), timeout=300) as answer:
        wheel = answer.read()
    if hashlib.sha256(wheel).hexdigest() != sha256:
        raise SystemExit(f"bootstrap_uv: {filename} does not match its pinned SHA-256")
    target = install_dir()
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        for name in ("uv", "uvx"):
            data = archive.read(f"uv-{VERSION}.data/scripts/{name}")
            # A unique temp name in the target folder, then a rename: never a half-written binary.
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target / name)
    uv = str(target / "uv")
    if not works(uv):
        raise SystemExit(f"bootstrap_uv: {uv} does not run on this machine")
    if shutil.which("uv") is None:
        login = " new login shells have it (~/.profile);" if target == default_dir() else ""
        print(
            f'uv is not on this shell\'s PATH:{login} export PATH="{target}:$PATH"', file=sys.stderr
        )
    return uv


if __name__ == "__main__":
    print(found() or install())
