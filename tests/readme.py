"""The README's commands, and the walk through them that a new user takes, for any shell.

:func:`walk_readme` runs every line of the README's ``sh`` blocks in order, as written, through
a :class:`ReadmeShell` (this machine's shell in a copy, or a login shell on a fresh machine in a
container), except the lines :data:`ELSEWHERE` names with the reason: a new command in the README
fails the walk until it runs or is named.
"""

from __future__ import annotations

import re
import subprocess
import time
from typing import Protocol

import httpx

from btc_core.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
ELSEWHERE = {  # README commands the walk does not run, and why
    "make test": "it is the suite the walk is part of",
}


class ReadmeShell(Protocol):
    """Runs one command as a new shell in the project folder would; fails on a non-zero exit."""

    ran: list[str]

    def __call__(
        self, command: str, timeout_s: float = 600
    ) -> subprocess.CompletedProcess[str]: ...

    def api_url(self) -> str:
        """PREFECT_API_URL as ``make up`` wrote it into the project's ``.env``."""
        ...

    def exists(self, name: str) -> bool:
        """Whether the project folder holds ``name``."""
        ...


def readme_commands() -> list[str]:
    """Every command of the README's ``sh`` blocks, in order, comments dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    lines = (line.split("  #")[0].strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line]


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


def walk_readme(shell: ReadmeShell, max_demo_lines: int) -> subprocess.CompletedProcess[str]:
    """The README's first command, each follow-up checked from outside through the API, ``make
    down``, the demo again on the same port, then every other README line. Returns the first
    ``make demo``."""
    commands = readme_commands()
    expected = set(commands) - set(ELSEWHERE)
    demo = shell("make demo")
    lines = demo.stdout.splitlines() + demo.stderr.splitlines()
    assert len(lines) <= max_demo_lines, "\n".join(lines)
    assert "btc-pipeline/btc-hourly: Completed" in demo.stdout
    url = shell.api_url()
    assert completed_runs(url, "btc-pipeline/btc-hourly") >= 1
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
    assert not shell.exists(".env")

    again = shell("make demo")
    assert shell.api_url() == url, "make demo after make down moved to another port"
    assert "Completed" in again.stdout
    for command in commands:
        if command not in shell.ran and command not in ELSEWHERE:
            shell(command)
    assert expected <= set(shell.ran), expected - set(shell.ran)
    return demo
