"""BTC_CODE_SOURCE: the choice, its warnings, and the prefect.yaml that ``prefect deploy`` reads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from btc_core.settings import PROJECT_ROOT
from deployments import code_source

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout holding the project's prefect.yaml, committed."""
    shutil.copy(PROJECT_ROOT / "prefect.yaml", tmp_path)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run([*GIT, *args], cwd=tmp_path, check=True)
    return tmp_path


def test_git_is_the_default_and_says_nothing_on_a_clean_checkout(checkout):
    assert code_source.choose({}, checkout) == ("git", "")


def test_a_dirty_tree_warns_that_its_changes_do_not_travel(checkout):
    (checkout / "new.py").write_text("")
    source, warning = code_source.choose({}, checkout)
    assert source == "git"
    assert "uncommitted changes do not travel with git_clone" in warning


def test_no_checkout_falls_back_to_the_path_unless_git_was_asked_for(tmp_path):
    source, warning = code_source.choose({}, tmp_path)
    assert source == "path" and "not a git checkout" in warning
    with pytest.raises(ValueError, match="not a git checkout"):
        code_source.choose({"BTC_CODE_SOURCE": "git"}, tmp_path)


def test_an_unknown_source_is_refused(tmp_path):
    with pytest.raises(ValueError, match="BTC_CODE_SOURCE='ftp': use one of git, s3, path"):
        code_source.choose({"BTC_CODE_SOURCE": "ftp"}, tmp_path)


@pytest.mark.parametrize(
    ("source", "push", "pull"),
    [
        ("git", None, "prefect.deployments.steps.git_clone"),
        (
            "s3",
            "prefect_aws.deployments.steps.push_to_s3",
            "prefect_aws.deployments.steps.pull_from_s3",
        ),
        ("path", None, None),
    ],
)
def test_the_chosen_steps_become_the_top_level_ones(tmp_path, source, push, pull):
    config = yaml.safe_load(code_source.prefect_file(source, tmp_path).read_text())
    assert [next(iter(step)) for step in config["push"]] == ([push] if push else [])
    assert (config["pull"] and next(iter(config["pull"][0]))) == pull
    docker = next(d for d in config["deployments"] if d["name"] == "btc-hourly-docker")
    assert docker["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/btc"}}
    ]
