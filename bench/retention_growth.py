"""PostgreSQL growth per 1,000 flow runs, without and with the retention of control-plane.env.

A server of its own on a scratch database; runs are created cheaply through the REST API in the
shape of a real btc-hourly run (states Scheduled -> Pending -> Running -> Completed, 3 task runs
(extract, load, notify) with 3 states each, 14 log lines, the counts-only summary artifact, 9
task-run events; the flow-run events the server emits itself).

1. Vacuum as Prefect ships it (events only, 7 days): N runs; that growth stays for good.
2. The retention of deployments/control-plane.env, its periods shortened to 2 h (Prefect's
   minimum is over 1 h), and the runs of step 1 made 3 h old in SQL (the API stamps states with
   the server's clock; nobody waits 2 hours): the vacuum deletes them, PostgreSQL's VACUUM
   (autovacuum's job) makes their space reusable, and N more runs grow the file by how much?

    uv run python -m bench.retention_growth [--runs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from deployments.postgres import PG_ADMIN, postgres_url, scratch_database
from deployments.processes import start_server, stop
from infra.ports import pick_port

TASKS = ("extract", "load", "notify")  # flows/btc.py's cycle (load also transforms)
LOG_LINES = 14
SUMMARY = (
    "# BTC pipeline run\n\n| | |\n|---|---|\n| source used | replay |\n| rows received | 2208 |\n"
    "| rows rejected | 0 |\n| observations new / updated / unchanged | 0 / 0 / 2208 |\n"
)
RETENTION = {  # control-plane.env's choice, with periods the bench's runs already exceed
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": "PT2H",
    "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "PT2H",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": "5",
}
TABLES = ("flow_run", "flow_run_state", "task_run", "task_run_state", "log", "artifact", "events")


def sql(database: str, statement: str) -> str:
    command = [*PG_ADMIN[:-1], "-d", database, "-qAtc", statement]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def size_mb(database: str) -> float:
    return int(sql(database, f"SELECT pg_database_size('{database}')")) / 2**20


def table_sizes(database: str) -> dict[str, int]:
    """Bytes of every table with its indexes and TOAST."""
    listing = sql(
        database,
        "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
        "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
    )
    return {name: int(n) for name, n in (line.split("|") for line in listing.splitlines())}


def biggest_growth(before: dict[str, int], after: dict[str, int], n: int = 5) -> str:
    grown = sorted(((after[t] - before.get(t, 0), t) for t in after), reverse=True)[:n]
    return ", ".join(f"{table} {delta / 2**20:+.1f}" for delta, table in grown)


def rows(database: str) -> dict[str, int]:
    counts = sql(database, " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES))
    return {table: int(n) for table, n in (line.split("|") for line in counts.splitlines())}


def state(kind: str) -> dict:
    return {"type": kind.upper(), "name": kind}


def task_run_event(kind: str, task_id: str, name: str, run_id: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": f"prefect.task-run.{kind}",
        "resource": {
            "prefect.resource.id": f"prefect.task-run.{task_id}",
            "prefect.resource.name": name,
        },
        "related": [
            {
                "prefect.resource.id": f"prefect.flow-run.{run_id}",
                "prefect.resource.role": "flow-run",
            }
        ],
    }


async def one_run(api: httpx.AsyncClient, flow_id: str) -> None:
    """One run shaped like a real btc-hourly run."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    created = await api.post(
        "/flow_runs/", json={"flow_id": flow_id, "name": name, "state": state("Scheduled")}
    )
    run_id = created.raise_for_status().json()["id"]
    for kind in ("Pending", "Running"):
        await api.post(f"/flow_runs/{run_id}/set_state", json={"state": state(kind), "force": True})
    events = []
    for task in TASKS:
        dynamic_key = str(uuid.uuid4())
        task_name = f"{task}-{dynamic_key[:3]}"  # as Prefect names a task run in a flow: "load-d76"
        created = await api.post(
            "/task_runs/",
            json={
                "flow_run_id": run_id,
                "task_key": task,
                "dynamic_key": dynamic_key,
                "name": task_name,
                "state": state("Pending"),
            },
        )
        task_id = created.raise_for_status().json()["id"]
        for kind in ("Running", "Completed"):
            await api.post(
                f"/task_runs/{task_id}/set_state", json={"state": state(kind), "force": True}
            )
        events += [
            task_run_event(kind, task_id, task_name, run_id)
            for kind in ("Pending", "Running", "Completed")
        ]
    logs = [
        {
            "name": "prefect.flow_runs",
            "level": 20,
            "flow_run_id": run_id,
            "message": f"log line {i} of a bench run",
            "timestamp": datetime.now(UTC).isoformat(),
        }
        for i in range(LOG_LINES)
    ]
    await api.post("/logs/", json=logs)
    await api.post(
        "/artifacts/",
        json={"key": "btc-run-summary", "type": "markdown", "data": SUMMARY, "flow_run_id": run_id},
    )
    await api.post("/events", json=events)
    await api.post(
        f"/flow_runs/{run_id}/set_state", json={"state": state("Completed"), "force": True}
    )


async def create_runs(api_url: str, n: int, parallel: int = 8) -> float:
    """``n`` runs through the API; returns the seconds it took."""
    started = time.monotonic()
    gate = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as api:
        flow = await api.post("/flows/", json={"name": "btc-pipeline"})
        flow_id = flow.raise_for_status().json()["id"]

        async def gated() -> None:
            async with gate:
                await one_run(api, flow_id)

        await asyncio.gather(*(gated() for _ in range(n)))
    return time.monotonic() - started


def settle(database: str, done=None, timeout_s: float = 900) -> dict[str, int]:
    """Row counts once ``done(counts)`` holds, or (without ``done``) once they stop changing
    for 10 s: events land through the persister, deletions through the vacuum loop."""
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        counts = rows(database)
        if (done(counts) if done else counts == last) or time.monotonic() > deadline:
            return counts
        last = counts
        time.sleep(10 if done is None else 2)


AGE = """
UPDATE flow_run SET end_time = end_time - interval '3 hours' WHERE end_time IS NOT NULL;
UPDATE events SET occurred = occurred - interval '3 hours';
UPDATE event_resources SET occurred = occurred - interval '3 hours';
"""


def vacuumed(database: str) -> dict[str, int]:
    """Row counts once Prefect's vacuum deleted every run and its events settled; RuntimeError
    if it left any run (all of them are older than the retention period)."""
    settle(database, lambda counts: counts["flow_run"] == 0)
    counts = settle(database)
    if counts["flow_run"]:
        raise RuntimeError(f"the vacuum left {counts['flow_run']} old flow runs: rows {counts}")
    return counts


def phase(tmp: Path, database: str, runs: int, retention: bool) -> None:
    port = pick_port(4780)
    env = {
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres_url(database),
        **(RETENTION if retention else {}),
    }
    server = start_server(tmp / "home", port, tmp / f"server-{retention}.log", **env)
    api_url = f"http://127.0.0.1:{port}/api"
    label = "with retention" if retention else "default vacuum"
    try:
        if retention:  # the vacuum takes the previous phase's runs first
            gone = vacuumed(database)
            print(f"{label}: the vacuum deleted the runs of before; rows: {gone}")
            for _ in range(2):  # the second pass recycles the index pages the first emptied
                sql(database, "VACUUM")
        before_mb, before_tables = size_mb(database), table_sizes(database)
        print(f"{label}: the database holds {before_mb:.1f} MiB, rows: {rows(database)}")
        took = asyncio.run(create_runs(api_url, runs))
        after = settle(database)
        grown = size_mb(database) - before_mb
        print(
            f"{label}: {runs} runs created in {took:.0f} s; the database grew {grown:.1f} MiB "
            f"({grown * 1000 / runs:.1f} MiB per 1,000 runs); rows: {after}"
        )
        print(f"{label}: MiB by table: {biggest_growth(before_tables, table_sizes(database))}")
        sql(database, AGE)
        if retention:
            print(f"{label}: 3 h later the vacuum deleted them again; rows: {vacuumed(database)}")
    finally:
        stop(server.pid, sigints=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="btc-retention-") as tmp,
        scratch_database("btc_ops_retention") as database,
    ):
        phase(Path(tmp), database, args.runs, retention=False)
        phase(Path(tmp), database, args.runs, retention=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
