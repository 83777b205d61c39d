"""Where process workers get the code of a deployment: ``BTC_CODE_SOURCE``, read at deploy time.

- ``git`` (the default): each run clones the deployed commit (Prefect's ``git_clone``) from
  ``BTC_CODE_REPOSITORY``, else from this checkout's own repository;
- ``s3``: ``prefect deploy`` uploads the working tree (``push_to_s3``), each run downloads it
  (``pull_from_s3``), against the endpoint and keys of the standard ``AWS_*`` variables;
- ``path``: Prefect's default pull step, this folder's absolute path (workers on this machine).

The steps themselves are in prefect.yaml (``definitions.code_sources``); this module only copies
the chosen set to the top level of a copy of the file, which ``prefect deploy`` then reads.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from btc_core.files import write_atomically
from btc_core.settings import PROJECT_ROOT

CodeSource = Literal["git", "s3", "path"]
CODE_SOURCES: tuple[str, ...] = get_args(CodeSource)
SETTING = "BTC_CODE_SOURCE"


def choose(env: Mapping[str, str] | None = None, root: Path = PROJECT_ROOT) -> tuple[str, str]:
    """The source ``BTC_CODE_SOURCE`` names and a warning for the deployer (empty if none):
    uncommitted changes that git_clone will not deliver, or, for the default in a folder that
    is no git checkout, the fallback to ``path``. ValueError for an unknown value or an
    explicit ``git`` without a checkout."""
    given = (os.environ if env is None else env).get(SETTING, "")
    source = given or "git"
    if source not in CODE_SOURCES:
        raise ValueError(f"{SETTING}={given!r}: use one of {', '.join(CODE_SOURCES)}")
    if source != "git":
        return source, ""
    if _git(root, "rev-parse", "--show-toplevel") != str(root.resolve()):
        if given:
            raise ValueError(f"{SETTING}=git, but {root} is not a git checkout")
        return "path", (
            f"warning: {root} is not a git checkout: the process deployments run from this "
            f"folder, so only workers on this machine can run them ({SETTING}=s3 for others)"
        )
    changed = _git(root, "status", "--porcelain")
    if not changed:
        return source, ""
    commit = _git(root, "rev-parse", "--short", "HEAD")
    return source, (
        f"warning: uncommitted changes do not travel with git_clone: process workers run "
        f"commit {commit}, without these {len(changed.splitlines())} changed or untracked "
        f"file(s); commit them and deploy again (or {SETTING}=s3, which uploads the tree)"
    )


def prefect_file(source: str, dest: Path, root: Path = PROJECT_ROOT) -> Path:
    """A copy of ``root/prefect.yaml`` in ``dest`` whose top-level build, push and pull steps are
    ``definitions.code_sources[source]`` (the Docker deployment keeps its own pull step)."""
    config: dict[str, Any] = yaml.safe_load((root / "prefect.yaml").read_text())
    config.update(config["definitions"]["code_sources"][source])
    path = dest / f"prefect.{source}.yaml"
    write_atomically(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path


def _git(root: Path, *args: str) -> str:
    """``git args`` in ``root``: its output, or "" when git fails or is missing."""
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""
