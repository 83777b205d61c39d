#!/usr/bin/env sh
# Start a Prefect Docker worker for the BTC pool on this machine (your infrastructure).
#
#   PREFECT_API_URL=http://127.0.0.1:4200/api workers/start-docker-worker.sh [POOL]
#
# Each flow run becomes a container of the flow image (python -m infra.image build, tag
# btc-flow:<version>-<git sha>, pulled only if absent) on this machine's Docker, with host
# networking, the DuckDB volume btc-data at /data, and /etc/btc mounted read-only: put the
# worker-side settings and secrets in /etc/btc/worker.env (see infra/worker.env.example); they
# never pass through the Prefect API. The Prefect settings of this worker reach the containers
# (PREFECT_API_URL, PREFECT_API_AUTH_STRING, PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, ...).
# Heartbeats every 30 s let the server mark runs Crashed if this machine dies (docs/hybrid.md).
# Stop it with Ctrl-C twice or workers/stop-worker.sh PID; running containers are not stopped.
set -eu
cd "$(dirname "$0")/.."
POOL="${1:-btc-docker}"
POLL="${BTC_WORKER_POLL_S:-10}"
: "${PREFECT_API_URL:?set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api (or use a Prefect profile)}"
if ! docker info >/dev/null 2>&1; then
    echo "no Docker daemon answers: start Docker, or run: sudo infra/provision.sh" >&2
    exit 1
fi
# uv: $UV, else the one on PATH, else installed once in ~/.local/bin (no pip, no venv module needed).
UV="${UV:-$(command -v uv || python3 scripts/bootstrap_uv.py)}"
IMAGE="$("$UV" run --frozen python -m infra.image tag)"
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "note: $IMAGE is not on this machine yet; build it: uv run python -m infra.image build" >&2
fi
export PREFECT_WORKER_QUERY_SECONDS="$POLL"
export PREFECT_WORKER_PREFETCH_SECONDS="$POLL"
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-30}"
# SIGINT back to its default: a worker started as a script's background job (or under nohup)
# inherits SIGINT ignored and would stop on no signal (coreutils >= 8.31: Debian 11, Ubuntu 20.04).
exec env --default-signal=INT "$UV" run --frozen --group platform prefect worker start --pool "$POOL" --type docker --name "$(hostname)-$POOL"
