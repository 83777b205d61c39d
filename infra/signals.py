"""What a child process inherits of this one's signal handling.

A command started in a script's background (``cmd &``, as CI harnesses and ``nohup``-style
launches do) inherits SIGINT *ignored*, and an ignored signal stays ignored across ``exec``.
``prefect worker start`` stops on SIGTERM by sending itself SIGINT (Prefect 3.9,
``setup_signal_handlers_worker``): with SIGINT ignored it never stops, and only SIGKILL ends it.
"""

from __future__ import annotations

import signal


def sigint_not_ignored() -> None:
    """Catch SIGINT again (Python's default, KeyboardInterrupt) if it is ignored, so that the
    processes started from here begin with SIGINT at its default. Main thread only."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
