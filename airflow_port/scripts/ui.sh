#!/usr/bin/env bash
# Start or stop the local Airflow UI the safe way: api-server bound to 127.0.0.1, scheduler and
# dag-processor as background processes, PIDs in var/run/*.pid, logs in var/run/*.log.
#   scripts/ui.sh up [PORT]    scripts/ui.sh down
# Not `airflow standalone`: it listens on every interface.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${AIRFLOW_UI_RUN_DIR:-var/run}        # PIDs and logs
HOME_DIR=${AIRFLOW_UI_HOME:-var/airflow_home}  # AIRFLOW_HOME (the tests use their own)
PORT=${2:-8080}
SERVICES=(dag-processor scheduler api-server)

running() { [[ -f $RUN_DIR/$1.pid ]] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

up() {
    mkdir -p "$RUN_DIR"
    if ! running api-server && .venv/bin/python -c "import socket, sys
s = socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PORT)) != 0)"; then
        echo "port $PORT on 127.0.0.1 is busy: free it or run 'make ui PORT=8081'" >&2
        exit 1
    fi
    for svc in "${SERVICES[@]}"; do
        if running "$svc"; then
            echo "$svc already running (PID $(cat "$RUN_DIR/$svc.pid"))"
            continue
        fi
        local extra=()
        # The scheduler's log server would listen on every interface; the api-server reads
        # the task logs from var/airflow_home/logs directly.
        [[ $svc == scheduler ]] && extra=(--skip-serve-logs)
        nohup .venv/bin/python -m btc_airflow.env --home "$HOME_DIR" --port "$PORT" \
            airflow "$svc" "${extra[@]}" >"$RUN_DIR/$svc.log" 2>&1 &
        echo $! >"$RUN_DIR/$svc.pid"
        echo "started $svc (PID $!, log $RUN_DIR/$svc.log)"
    done
    local url="http://127.0.0.1:$PORT"
    for _ in $(seq 120); do  # a cold start on a busy 2-core machine took over 60 s
        if curl -fsS "$url/api/v2/monitor/health" >/dev/null 2>&1; then
            # Absolute: `make airflow-ui` runs this from the project root, not from airflow_port/.
            echo "Airflow UI: $url  (user admin, password in $(realpath "$HOME_DIR")/simple_auth_manager_passwords.json.generated)"
            echo "The DAG btc_price starts paused: unpause it in the UI to run it hourly. Stop with 'make airflow-ui-down' (in airflow_port/: 'make ui-down')."
            return 0
        fi
        if ! running api-server; then break; fi
        sleep 1
    done
    echo "the api-server did not answer on $url; see $RUN_DIR/api-server.log" >&2
    tail -n 20 "$RUN_DIR/api-server.log" >&2
    exit 1
}

down() {
    for svc in "${SERVICES[@]}"; do
        local pidfile=$RUN_DIR/$svc.pid
        [[ -f $pidfile ]] || continue
        local pid
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
            echo "stopped $svc (PID $pid)"
        fi
        rm -f "$pidfile"
    done
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up [PORT] | down" >&2; exit 2 ;;
esac
