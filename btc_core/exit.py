"""How the project's command-line entry points (``btc``, ``python flows/btc.py``) end."""

from __future__ import annotations

import atexit
import gc


def skip_exit_collection() -> None:
    """Spare this process the interpreter's last garbage collection at exit: it walks every
    object the imports made, to free memory the OS takes back anyway (measured: 50-90 ms of a
    ``btc run``, about 0.3 s of ``python flows/btc.py`` with Prefect loaded). ``gc.freeze`` runs
    after the other exit handlers (Prefect flushes its logs and events in its own); files and
    connections are closed by their ``with`` blocks long before."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
