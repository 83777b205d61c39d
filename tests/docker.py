"""The Docker engine, as the tests that need one see it."""

from __future__ import annotations

import subprocess


def docker_answers() -> bool:
    """A Docker daemon answers (infra/provision.sh starts one)."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
