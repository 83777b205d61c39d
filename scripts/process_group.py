"""Run a command as a process group of its own, hand SIGTERM, SIGINT and SIGHUP to the whole
group (as a terminal's Ctrl-C does), and leave nothing behind; exit with the command's status.

    python -m scripts.process_group dagster dev ...

A service manager, ``kill PID`` or ``docker stop`` signal one process; ``dagster dev`` then stops
its webserver, daemon and code server one after the other, and the code server may outlive it.
Signalled together they stop in parallel (about 5 s on a quiet 2-core machine; up to 22 s when
it was loaded, measured). Like ``docker stop``, what still runs :data:`GRACE_S` after the first
signal, or after the command itself ended, is killed, and said so on stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_S = 6.0  # so that everything is gone within 10 s of a SIGTERM, loaded or not


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m scripts.process_group COMMAND [ARGS...]", file=sys.stderr)
        return 2
    deadline: list[float] = []  # set by the first signal
    started: list[subprocess.Popen] = []

    def forward(sig: int, _frame: object) -> None:
        if started:
            signal_group(started[0].pid, sig)
        deadline.append(time.monotonic() + GRACE_S)

    # Caught before the start, so the command begins with each at its default even where this
    # process inherited one ignored (a script's `cmd &` ignores SIGINT; exec keeps that).
    for sig in FORWARDED:
        signal.signal(sig, forward)
    child = subprocess.Popen(argv, process_group=0)
    started.append(child)
    code = None
    while code is None:
        with suppress(subprocess.TimeoutExpired):
            code = child.wait(timeout=0.2)
        if code is None and deadline and time.monotonic() > deadline[0]:
            _kill_the_rest(child.pid, argv[0])
            deadline.clear()
    end = deadline[0] if deadline else time.monotonic() + GRACE_S
    while signal_group(child.pid, 0):  # helpers the command left running, if any
        if time.monotonic() > end:
            _kill_the_rest(child.pid, argv[0])
            break
        time.sleep(0.1)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def _kill_the_rest(pgid: int, name: str) -> None:
    if signal_group(pgid, signal.SIGKILL):
        print(
            f"process_group: {name}'s processes still ran {GRACE_S:g} s on; killed", file=sys.stderr
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
