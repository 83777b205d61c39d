#!/bin/sh
# Entry point of the flow runtime image: export the worker machine's settings and secrets, then
# run the command (for a Docker work pool: `prefect flow-run execute`).
#
# The Docker work pool mounts a directory of the worker's host at /run/btc (read-only, default
# /etc/btc). Its worker.env holds KEY=VALUE lines (Docker's --env-file syntax: no quotes, no
# expansion, # comments): BTC_COINGECKO_API_KEY, BTC_WEBHOOK_URL, AWS_ACCESS_KEY_ID, ... They
# reach the flow from the worker's disk and never pass through the Prefect API or its database.
set -eu
ENV_FILE=/run/btc/worker.env
if [ -f "$ENV_FILE" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            '' | '#'*) ;;
            *=*) export "${line?}" ;;
            *) echo "btc-entrypoint: ignoring a line without '=' in $ENV_FILE" >&2 ;;
        esac
    done <"$ENV_FILE"
fi
exec "$@"
