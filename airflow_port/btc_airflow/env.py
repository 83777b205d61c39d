"""The project-local Airflow environment, defined once.

AIRFLOW_HOME under ``airflow_port/var/`` (git-ignored), ``dags/`` as the DAG folder, no example
DAGs, and the API server on 127.0.0.1 only. Airflow reads its configuration when it is first
imported, so :func:`apply` must run before ``import airflow``.

``python -m btc_airflow.env [--home DIR] [--port N] CMD ...`` runs CMD in this environment
(that is how the Makefile calls ``airflow``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PORT_DIR = Path(__file__).resolve().parent.parent
DAGS_FOLDER = PORT_DIR / "dags"
DEFAULT_HOME = PORT_DIR / "var" / "airflow_home"
DEFAULT_PORT = 8080


def environ(home: Path = DEFAULT_HOME, port: int = DEFAULT_PORT) -> dict[str, str]:
    """The ``AIRFLOW_*`` variables of the project-local environment."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # One DAG whose tasks run one after the other: two worker processes, not 32.
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # Workers reach the execution API here; "localhost" may resolve to ::1 first.
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }


def apply(home: Path = DEFAULT_HOME, port: int = DEFAULT_PORT) -> None:
    """Set the environment in this process (before Airflow is imported)."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(environ(home, port))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m btc_airflow.env", description=__doc__)
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="AIRFLOW_HOME")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="API server port")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run")
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("give a command to run, e.g. airflow dags list")
    apply(args.home.resolve(), args.port)
    # The tools of this environment (airflow, pytest) come first, activated or not.
    os.environ["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"]))
    os.execvp(args.command[0], args.command)


if __name__ == "__main__":
    main()
