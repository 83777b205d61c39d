#!/usr/bin/env sh
# Stop a worker cleanly by PID: SIGINT (finish current runs), SIGINT again (stop now), then TERM.
set -u
PID="${1:?usage: workers/stop-worker.sh PID}"
for sig in INT INT TERM; do
    kill -"$sig" "$PID" 2>/dev/null || exit 0
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$PID" 2>/dev/null || exit 0
        sleep 0.5
    done
done
