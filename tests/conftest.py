"""Shared fixtures live in tests/plugin.py, so the Airflow environment's suite can use them too.

Under pytest-xdist (``make test`` runs ``pytest -n 2 --dist loadgroup``) every other test goes to
whichever worker is free, but each group in ``GROUPS`` runs on a single worker: its session
fixtures are started once (e2e: dockerd, the flow image, the hybrid server and the compose stack;
ui: Chromium and the three UIs' servers; ops: the HA stack), and its tests share the project
folder's ``var/``. The UI tests need no Docker: as a group of their own they run beside the
Docker ones instead of after them (the longest group bounds the wall time).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.plugin"]

TESTS = Path(__file__).parent
UI_TESTS = ("e2e/test_browser.py", "e2e/test_make_dagster.py", "e2e/test_readme.py")
GROUPS = ("e2e", "ops")  # folders; the UI tests of tests/e2e are the group "ui"


def pytest_itemcollected(item: pytest.Item) -> None:
    """Group marks, set as each test is collected: xdist reads them in its own
    ``pytest_collection_modifyitems``, which runs before a conftest's."""
    path = item.path.relative_to(TESTS)
    if path.as_posix() in UI_TESTS:
        item.add_marker(pytest.mark.xdist_group("ui"))
    elif path.parts[0] in GROUPS:
        item.add_marker(pytest.mark.xdist_group(path.parts[0]))
