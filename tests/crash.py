"""Crash drills: make a process pause inside its load transaction so a test can kill -9 it there.

The store offers a seam for it (``PriceStore.before_commit``); nothing in the product sets it.
:func:`pausing_env` gives a child process (and its children) the environment that installs the
pause at start-up (tests/hooks/sitecustomize.py); :func:`wait_for_pause` reads the PID it
announces. In a flow container, mount :data:`HOOKS` and point PYTHONPATH at it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from btc_core.settings import PROJECT_ROOT

HOOKS = Path(__file__).resolve().parent / "hooks"
ANNOUNCE = "test hook: PID"


def pausing_env(seconds: float, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for a child process (and its children) that pause in each load."""
    env = dict(os.environ if base is None else base)
    path = env.get("PYTHONPATH", "")
    return {
        **env,
        "BTC_TEST_PAUSE_BEFORE_COMMIT_S": f"{seconds:g}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(HOOKS), path) if p),
    }


def wait_for_pause(read: Callable[[], str], timeout_s: float = 120) -> int:
    """The PID a paused process announced in the text ``read()`` returns."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in read().splitlines():
            if ANNOUNCE in line:
                return int(line.split(ANNOUNCE)[1].split()[0])
        time.sleep(0.2)
    raise TimeoutError("the load never paused")


# A child that loads the replay file of its BTC_* settings into their store.
LOAD = """
from btc_core.pipeline import store_for
from btc_core.settings import Settings
from btc_core.sources import Replay

settings = Settings.from_env()
store_for(settings).load(Replay(settings).fetch())
"""


def kill_inside_load(env: dict[str, str], timeout_s: float = 120) -> None:
    """Run :data:`LOAD` in a child with ``env``, wait until it pauses inside its transaction
    (after the upsert, before the refresh of daily_avg and the commit), SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", LOAD],
        env=pausing_env(300, {**os.environ, **env}),
        cwd=PROJECT_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen: list[str] = []
        pid = wait_for_pause(lambda: seen.append(child.stderr.readline()) or "".join(seen))  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        assert child.wait(timeout_s) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
