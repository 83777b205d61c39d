"""A process started from a script's background inherits SIGINT ignored; what the project starts
from there must not (infra/signals.py says why: Prefect's worker would ignore SIGTERM)."""

from __future__ import annotations

import subprocess
import sys

from btc_core.settings import PROJECT_ROOT

CHILD_SIGINT = "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"


def _child_ignores_sigint(reset: bool) -> bool:
    parent = (
        "import signal, subprocess, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "from infra.signals import sigint_not_ignored\n"
        f"{'sigint_not_ignored()' if reset else ''}\n"
        f"subprocess.run([sys.executable, '-c', {CHILD_SIGINT!r}])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", parent], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    return out.strip() == "True"


def test_an_ignored_sigint_is_inherited_unless_caught_again():
    assert _child_ignores_sigint(reset=False)  # the hazard is real
    assert not _child_ignores_sigint(reset=True)
