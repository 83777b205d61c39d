"""Shared fixtures live in tests/plugin.py, so the Airflow environment's suite can use them too.

Under pytest-xdist (``make test`` runs ``pytest -n 2 --dist loadgroup``) every other test goes to
whichever worker is free, but each group in ``GROUPS`` runs on a single worker: its session
fixtures are started once (e2e: dockerd, the flow image, the hybrid server and the compose stack;
ui: Chromium and the three UIs' servers; ops: the HA stack), and its tests share the project
folder's ``var/``. The UI tests need no Docker: as a group of their own they run beside the
Docker ones instead of after them (the longest group bounds the wall time). The tests on
``prefect_server``, ``bare_server`` or ``postgres_server`` form a group per server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.plugin"]

TESTS = Path(__file__).parent
UI_TESTS = ("e2e/test_browser.py", "e2e/test_make_dagster.py", "e2e/test_readme.py")
GROUPS = ("e2e", "ops", "hosts")  # folders; the UI tests of tests/e2e are the group "ui"
# `make test` runs `pytest -m alone tests/hostile` after the parallel suite: collecting only this
# folder saves collecting the whole suite for four tests.
ALONE_FOLDER = "hostile"
# Servers of tests/prefect: the tests on each run on one worker, which starts the server (and the
# deployments, and the process worker) once instead of once per xdist worker. They are
# package-scoped, like tests/e2e's hybrid server and its workers: stopped when the worker moves
# on to another folder, not left idling (2-8 % of a core each, with their polling workers)
# until the session ends.
SERVER_GROUPS = ("prefect_server", "bare_server", "postgres_server")
# The longest tests outside any group (measured: the kill -9 drill 108 s, the four-run lake 59 s,
# the parity scripts 20-36 s each). xdist hands out the units with the most tests first (the
# groups), then single tests in the order collected: these go first among those, so that the run
# does not end on one of them while the other worker has finished (68 s of one idle worker,
# measured, with them collected last).
LONGEST_FIRST = (
    "prefect/test_crash_recovery.py",
    "prefect/test_ducklake_hosts.py",
    "test_parity.py",
)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Group marks (and the check that alone tests are where `make test` looks), set as each test
    is collected: xdist reads the marks in its own ``pytest_collection_modifyitems``, which runs
    before a conftest's."""
    path = item.path.relative_to(TESTS)
    if item.get_closest_marker("alone") and path.parts[0] != ALONE_FOLDER:
        raise pytest.UsageError(
            f"{item.nodeid}: tests marked alone belong in tests/{ALONE_FOLDER}/ "
            "(make test collects only that folder for them)"
        )
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of ``LONGEST_FIRST`` ahead of the rest, each file's tests kept in order."""
    if moved := [name for name in LONGEST_FIRST if not (TESTS / name).is_file()]:
        raise pytest.UsageError(f"LONGEST_FIRST names files that are gone: {', '.join(moved)}")
    items.sort(key=lambda item: item.path.relative_to(TESTS).as_posix() not in LONGEST_FIRST)
