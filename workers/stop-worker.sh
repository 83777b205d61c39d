#!/usr/bin/env sh
# Stop a Prefect worker by PID (of workers/start-process-worker.sh, or of `prefect worker start`)
# without leaving a run Running, and without SIGKILL when the worker is idle:
#
# 1. SIGTERM to each flow-run process of the worker. Prefect's flow engine marks its run Crashed
#    ("Execution was aborted by a termination signal") and exits; a run whose engine had not
#    started yet is marked Crashed by the worker, still alive to see the exit. (Stopping the worker
#    first would not do: Prefect 3.9's worker SIGKILLs its flow-run processes as it stops, and
#    nothing then reports their runs.)
# 2. One SIGTERM to the worker: `uv run` passes it on, Prefect's worker turns it into a SIGINT to
#    itself and stops in 1-2 s. Never a second one: Prefect answers a second SIGINT or SIGTERM by
#    SIGKILLing the worker ("Sending SIGKILL to the process worker").
# 3. Only if it still runs after STOP_GRACE_S seconds (default 20): SIGKILL, said on stderr.
set -u
PID="${1:?usage: workers/stop-worker.sh PID}"
GRACE="${STOP_GRACE_S:-20}"

children() {  # the PIDs whose parent is $1
    grep -l "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3
}

cmdline() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
}

running() {  # $1 is alive (an exited child its parent has not reaped yet counts as gone)
    kill -0 "$1" 2>/dev/null && ! grep -q "^State:[[:space:]]*Z" "/proc/$1/status" 2>/dev/null
}

wait_gone() {  # wait until none of the PIDs "$2..." is running, at most $1 seconds
    limit=$(($1 * 10))
    shift
    while [ "$limit" -gt 0 ]; do
        left=""
        for p in "$@"; do
            running "$p" && left="$left $p"
        done
        [ -z "$left" ] && return 0
        sleep 0.1
        limit=$((limit - 1))
    done
    return 1
}

running "$PID" || exit 0
# The worker itself: $PID, or the `prefect worker start` child of `uv run` (or of a shell).
worker="$PID"
for child in $(children "$PID"); do
    case "$(cmdline "$child")" in *"worker start"*) worker="$child" ;; esac
done
runs=$(children "$worker" | tr '\n' ' ')
if [ -n "$runs" ]; then
    # shellcheck disable=SC2086  # one PID per word
    kill -TERM $runs 2>/dev/null
    # shellcheck disable=SC2086
    wait_gone "$GRACE" $runs || echo "stop-worker: flow-run processes $runs still running" >&2
fi
kill -TERM "$PID" 2>/dev/null || exit 0
wait_gone "$GRACE" "$PID" "$worker" && exit 0
echo "stop-worker: PID $PID still running ${GRACE} s after SIGTERM: sending SIGKILL (a worker" \
    "started with SIGINT ignored, as a script's background job is, cannot stop on a signal)" >&2
kill -KILL "$worker" "$PID" 2>/dev/null
exit 1
