"""Shared fixtures live in tests/plugin.py, so the Airflow environment's suite can use them too.

Under pytest-xdist (``make test`` runs ``pytest -n 2 --dist loadgroup``) every other test goes to
whichever worker is free, but each folder named in ``ONE_WORKER`` runs on a single worker: its
session fixtures (dockerd and the flow image, the hybrid server, the HA stack) are started once,
and its tests share the project folder's ``var/`` and the screenshots in ``docs/img``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.plugin"]

ONE_WORKER = ("e2e", "ops")
TESTS = Path(__file__).parent


def pytest_itemcollected(item: pytest.Item) -> None:
    """Group marks, set as each test is collected: xdist reads them in its own
    ``pytest_collection_modifyitems``, which runs before a conftest's."""
    folder = item.path.relative_to(TESTS).parts[0]
    if folder in ONE_WORKER:
        item.add_marker(pytest.mark.xdist_group(folder))
