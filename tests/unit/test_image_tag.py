"""The flow image's tag names what is in the image, not the state of the whole work tree."""

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.image import PROJECT_ROOT, git_revision, image_inputs


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout with the project's .dockerignore, a Dockerfile, code and a screenshot."""
    shutil.copy(PROJECT_ROOT / ".dockerignore", tmp_path / ".dockerignore")
    for path in ("infra/Dockerfile", "btc_core/store.py", "docs/img/ui.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1\n")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v1"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *command], cwd=tmp_path, check=True
        )
    return tmp_path


def test_a_new_screenshot_is_not_a_new_image(checkout: Path):
    """The UI tests write docs/img while the Docker tests run beside them: the image built first
    and the image the pools asked for later must have the same tag."""
    clean = git_revision(checkout)
    (checkout / "docs" / "img" / "ui.png").write_text("v2\n")
    (checkout / "docs" / "img" / "new.png").write_text("v1\n")
    assert git_revision(checkout) == clean and not clean.endswith("-dirty")


@pytest.mark.parametrize("changed", ["btc_core/store.py", "infra/Dockerfile"])
def test_a_changed_input_of_the_image_is_dirty(checkout: Path, changed: str):
    (checkout / changed).write_text("v2\n")
    assert git_revision(checkout).endswith("-dirty")


def test_the_inputs_are_the_build_context_and_the_dockerfile():
    inputs = image_inputs()
    assert {"infra/Dockerfile", "btc_core/", "flows/", "deployments/", "uv.lock"} <= set(inputs)
    assert not any(path.startswith(("docs", "tests")) for path in inputs)
