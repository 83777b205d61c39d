#!/usr/bin/env sh
# Start a Prefect process worker for the BTC pool on this machine (your infrastructure).
#
#   PREFECT_API_URL=http://127.0.0.1:4200/api workers/start-process-worker.sh [POOL]
#
# The worker polls the control plane every BTC_WORKER_POLL_S seconds (Prefect's default is 10;
# lower means faster pickup, more API calls) and runs each flow run as a subprocess, in a
# temporary folder where the deployment's pull step puts the deployed code (git clone or S3
# download: BTC_CODE_SOURCE of the deployer, docs/hybrid.md), with the worker's own environment
# var/worker-venv: exactly the locked project and its default groups, synced at each start
# (created on the first), nothing else the checkout's .venv holds (deployments/worker_env.py).
# BTC_WORKER_GROUPS adds groups by name: "platform" for BTC_CODE_SOURCE=s3, "lake" for DuckLake.
# It keeps the DuckDB file (var/ of this checkout, or BTC_DB_PATH) and the secrets
# (BTC_COINGECKO_API_KEY, BTC_WEBHOOK_URL) on this machine. Stop it with Ctrl-C twice (the first
# lets running flows finish) or workers/stop-worker.sh PID.
set -eu
cd "$(dirname "$0")/.."
POOL="${1:-btc-process}"
POLL="${BTC_WORKER_POLL_S:-10}"
: "${PREFECT_API_URL:?set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api (or use a Prefect profile)}"
export PREFECT_WORKER_QUERY_SECONDS="$POLL"
export PREFECT_WORKER_PREFETCH_SECONDS="$POLL"
export PREFECT_LOGGING_EXTRA_LOGGERS="${PREFECT_LOGGING_EXTRA_LOGGERS:-btc_core}"
# uv: $UV, else the one on PATH, else installed once in ~/.local/bin (no pip, no venv module needed).
UV="${UV:-$(command -v uv || python3 scripts/bootstrap_uv.py)}"
GROUPS=""
for group in ${BTC_WORKER_GROUPS:-}; do GROUPS="$GROUPS --group $group"; done
# SIGINT back to its default: a worker started as a script's background job (or under nohup)
# inherits SIGINT ignored and would stop on no signal (coreutils >= 8.31: Debian 11, Ubuntu 20.04).
# shellcheck disable=SC2086  # one group name per word
exec env --default-signal=INT UV_PROJECT_ENVIRONMENT=var/worker-venv "$UV" run --frozen --exact \
    --compile-bytecode $GROUPS prefect worker start --pool "$POOL" --name "$(hostname)-$POOL"
