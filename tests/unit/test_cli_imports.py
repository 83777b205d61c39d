"""``btc run`` and ``btc backfill`` start light: no chart library, no pandas, no doctor.

Each runs in a fresh interpreter (an import made by an earlier test would hide one made here),
which then reports what it imported. No timing: the benchmark (``bench.ingest``) measures that.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from btc_core.settings import DEFAULT_REPLAY_FILE

HEAVY = ("matplotlib", "pandas", "btc_core.doctor")
PROBE = f"""
import json, sys
from btc_core.cli import main
code = main(sys.argv[1:])
heavy = sorted({{m for m in sys.modules for h in {HEAVY!r} if m == h or m.startswith(h + ".")}})
print(json.dumps({{"code": code, "heavy": heavy}}))
"""
COMMANDS = {
    "run": ["run", "--notify", "none"],
    "backfill": ["backfill", "--from", "2023-10-01", "--to", "2023-12-31"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_run_and_backfill_on_replay_import_no_heavy_module(command: str, tmp_path: Path) -> None:
    argv = [*COMMANDS[command], "--source", "replay", "--replay-file", str(DEFAULT_REPLAY_FILE)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTC_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv, "--db", str(tmp_path / "btc.duckdb")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"code": 0, "heavy": []}
