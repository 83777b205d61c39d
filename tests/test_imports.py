"""Every module of the project's tools imports: a refactor that moves a name breaks here, not in
the hands of whoever next runs a benchmark (bench.ha_throughput and bench.ducklake_ingest did)."""

from __future__ import annotations

import importlib

import pytest

from btc_core.settings import PROJECT_ROOT

FOLDERS = ("bench", "scripts", "deployments", "infra", "flows", "dagster_port")
ELSEWHERE = {"bench.airflow_overhead"}  # runs in airflow_port's environment (make bench)


def modules() -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            name = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            found.append(name.removesuffix(".__init__"))
    return [name for name in found if name not in ELSEWHERE]


@pytest.mark.parametrize("name", modules())
def test_the_module_imports(name):
    importlib.import_module(name)
