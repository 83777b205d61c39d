"""Start-up hook of the crash drills, for processes a test cannot reach otherwise (a flow run that
a Prefect worker starts, a flow container, the ``btc`` CLI): Python imports ``sitecustomize`` from
PYTHONPATH at start. With ``BTC_TEST_PAUSE_BEFORE_COMMIT_S`` set, every load of the process says
``test hook: PID <pid>`` on stderr and pauses that long inside its transaction (after the
upsert, before the refresh of daily_avg and the commit), so the test can kill -9 it there. Only
``tests/crash.py`` puts this folder on PYTHONPATH: production never runs it.
"""

import os

if os.environ.get("BTC_TEST_PAUSE_BEFORE_COMMIT_S"):
    import sys
    import time

    from btc_core.store import PriceStore

    def _pause(
        store: PriceStore, seconds: float = float(os.environ["BTC_TEST_PAUSE_BEFORE_COMMIT_S"])
    ) -> None:
        print(
            f"btc: test hook: PID {os.getpid()} pausing {seconds:g} s", file=sys.stderr, flush=True
        )
        time.sleep(seconds)

    PriceStore.before_commit = _pause
