"""The README's commands, as written, in a new shell of this machine, in a fresh copy of the
project (tests/readme.py walks them; tests/hosts/test_fresh_machine.py on a stock Debian server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from btc_core.settings import PROJECT_ROOT
from tests.readme import walk_readme

pytestmark = pytest.mark.integration
MAX_DEMO_LINES = 40


def fresh_copy(dest: Path) -> Path:
    """The project's tracked files (as this checkout has them) in ``dest``: a fresh clone."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = PROJECT_ROOT / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


PROJECT_VARS = ("BTC_", "PREFECT_", "DAGSTER_", "AIRFLOW", "VIRTUAL_ENV", "UV_PROJECT", "PYTHON")


def new_shell() -> dict[str, str]:
    """The environment of a new login shell on this machine: the machine's own variables
    (certificates, proxies, locale), none of the suite's BTC_, PREFECT_, virtualenv or PYTHON*
    values, and ``~/.local/bin`` first on PATH once it exists, as Debian's and Ubuntu's
    ``~/.profile`` put it (where `make demo` installs uv when the machine has none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARS)}
    venv_bin = str(Path(os.environ.get("VIRTUAL_ENV", PROJECT_ROOT / ".venv")) / "bin")
    paths = [p for p in env["PATH"].split(os.pathsep) if p != venv_bin]
    local_bin = Path.home() / ".local" / "bin"
    if local_bin.is_dir() and str(local_bin) not in paths:
        paths.insert(0, str(local_bin))
    env["PATH"] = os.pathsep.join(paths)
    return env


class Shell:
    """Commands run in the copy, each as a new shell would run it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ran: list[str] = []

    def __call__(self, command: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.folder,
            env=new_shell(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        self.ran.append(command)
        assert result.returncode == 0, f"`{command}` failed:\n{result.stdout}\n{result.stderr}"
        return result

    def api_url(self) -> str:
        line = next(
            x for x in (self.folder / ".env").read_text().splitlines() if x.startswith("PREFECT_")
        )
        return line.split("=", 1)[1]

    def exists(self, name: str) -> bool:
        return (self.folder / name).exists()


@pytest.fixture
def shell(tmp_path) -> Shell:
    """A fresh copy; `make demo` installs uv itself when no uv is on PATH."""
    copy = Shell(fresh_copy(tmp_path / "btc-orchestration"))
    yield copy
    subprocess.run(["make", "down"], cwd=copy.folder, env=new_shell(), capture_output=True)


@pytest.mark.timeout(1800)
def test_the_readme_works_as_written_in_a_new_shell(shell: Shell):
    """Then, in the same copy, the Makefile's other targets for the local stack and the plain
    pipeline (`make status` while the demo runs, and after `make down`; `make plain`)."""
    walk_readme(shell, MAX_DEMO_LINES)
    status = shell("make status").stdout
    assert f"server {shell.api_url().removesuffix('/api')} PID" in status and ": running" in status
    assert "DEAD" not in status, status
    shell("make down")
    gone = subprocess.run(["make", "status"], cwd=shell.folder, env=new_shell(), text=True,
                          capture_output=True)  # fmt: skip
    assert gone.returncode != 0 and "not running" in gone.stdout, gone.stdout
    shell("make plain")
    export = json.loads((shell.folder / "var" / "daily_avg.json").read_text())
    assert len(export) == 92 and export[-1]["day"] == "2023-12-31", export[-1]
    assert (shell.folder / "var" / "daily_avg_90d.png").read_bytes()[:4] == b"\x89PNG"
