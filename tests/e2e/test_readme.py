"""The README's commands, as written, in a new shell, in a fresh copy of the project.

Every line of the README's ``sh`` blocks runs here, in order, except the few that :data:`ELSEWHERE`
names with the reason; a new command in the README fails this test until it runs or is named.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from btc_core.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration
README = PROJECT_ROOT / "README.md"
ELSEWHERE = {  # README commands this test does not run, and why
    "make test": "it is the suite this test is part of",
}
MAX_DEMO_LINES = 40


def readme_commands() -> list[str]:
    """Every command of the README's ``sh`` blocks, in order, comments dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    lines = (line.split("  #")[0].strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line]


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
    """The environment of a new shell on this machine: the machine's own variables (certificates,
    proxies, locale), none of the suite's BTC_, PREFECT_, virtualenv or PYTHON* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARS)}
    venv_bin = str(Path(os.environ.get("VIRTUAL_ENV", PROJECT_ROOT / ".venv")) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
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


def completed_runs(api_url: str, deployment: str) -> int:
    found = httpx.get(f"{api_url}/deployments/name/{deployment}", timeout=10).json()
    runs = httpx.post(
        f"{api_url}/flow_runs/filter",
        json={"flow_runs": {"deployment_id": {"any_": [found["id"]]}}, "limit": 50},
        timeout=10,
    ).json()
    return sum(run["state"]["type"] == "COMPLETED" for run in runs)


def wait_for_completed(api_url: str, deployment: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while completed_runs(api_url, deployment) < 1:
        assert time.monotonic() < deadline, f"no Completed run of {deployment}"
        time.sleep(1)


@pytest.fixture
def shell(tmp_path) -> Shell:
    if shutil.which("uv", path=new_shell()["PATH"]) is None:
        pytest.skip("no `uv` on the PATH of a new shell (pip install uv)")
    copy = Shell(fresh_copy(tmp_path / "btc-orchestration"))
    yield copy
    subprocess.run(["make", "down"], cwd=copy.folder, env=new_shell(), capture_output=True)


@pytest.mark.timeout(1800)
def test_the_readme_works_as_written_in_a_new_shell(shell: Shell):
    commands = readme_commands()
    expected = set(commands) - set(ELSEWHERE)
    demo = shell("make demo")
    lines = demo.stdout.splitlines() + demo.stderr.splitlines()
    assert len(lines) <= MAX_DEMO_LINES, "\n".join(lines)
    assert "btc-pipeline/btc-hourly: Completed" in demo.stdout
    url = shell.api_url()
    assert f"Open the UI: {url.removesuffix('/api')}" in demo.stdout
    # what the demo creates is what it runs: no Docker pool nobody polls
    assert httpx.get(f"{url}/work_pools/btc-docker", timeout=10).status_code == 404

    doctor = shell("uv run btc doctor")
    assert "FAIL" not in doctor.stdout, doctor.stdout
    shell("uv run prefect event emit btc.replay.updated --resource-id btc.replay.demo")
    wait_for_completed(url, "btc-pipeline/btc-on-event")
    shell(
        "uv run prefect deployment run btc-backfill/btc-backfill -p start=2023-11-01 -p end=2023-11-30"
    )
    wait_for_completed(url, "btc-backfill/btc-backfill")
    shell("make down")
    assert "nothing to stop" in shell("make down").stdout
    assert not (shell.folder / ".env").exists()

    again = shell("make demo")
    assert shell.api_url() == url, "make demo after make down moved to another port"
    assert "Completed" in again.stdout
    for command in commands:
        if command not in shell.ran and command not in ELSEWHERE:
            shell(command)
    assert expected <= set(shell.ran), expected - set(shell.ran)
