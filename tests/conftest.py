"""Shared fixtures live in tests/plugin.py, so the Airflow environment's suite can use them too.

Under pytest-xdist (``make test`` runs ``pytest -n 2 --dist loadgroup``) every other test goes to
whichever worker is free, but each group in ``GROUPS`` runs on a single worker: its session
fixtures are started once (e2e: dockerd, the flow image, the hybrid server and the compose stack;
ui: Chromium and the three UIs' servers; ops: the HA stack), and its tests share the project
folder's ``var/``. The UI tests need no Docker: as a group of their own they run beside the
Docker ones instead of after them (the longest group bounds the wall time). The few tests on
``bare_server`` or ``postgres_server`` form a group per server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.plugin"]

TESTS = Path(__file__).parent
UI_TESTS = ("e2e/test_browser.py", "e2e/test_make_dagster.py", "e2e/test_readme.py")
GROUPS = ("e2e", "ops")  # folders; the UI tests of tests/e2e are the group "ui"
# Session servers that only a few tests use: those tests run on one worker, which starts the
# server once (instead of once per worker, each left idling until the session ends).
SERVER_GROUPS = ("bare_server", "postgres_server")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Group marks, set as each test is collected: xdist reads them in its own
    ``pytest_collection_modifyitems``, which runs before a conftest's."""
    path = item.path.relative_to(TESTS)
    fixtures = getattr(item, "fixturenames", ())
    if path.as_posix() in UI_TESTS:
        item.add_marker(pytest.mark.xdist_group("ui"))
    elif path.parts[0] in GROUPS:
        item.add_marker(pytest.mark.xdist_group(path.parts[0]))
    else:
        for fixture in SERVER_GROUPS:
            if fixture in fixtures:
                item.add_marker(pytest.mark.xdist_group(fixture))
                break
