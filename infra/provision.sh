#!/usr/bin/env bash
# Provision this machine for the hybrid setup and its tests: Docker engine (docker.io), debootstrap
# (the local base image) and docker-compose (runs infra/docker-compose.yml), all from
# Debian's packages; then make sure a Docker daemon answers.
#
#   sudo infra/provision.sh          # idempotent: installs what is missing, starts dockerd if needed
#
# Where no init system manages Docker (CI, containers), dockerd is started in the background; its
# PID goes to /run/btc-dockerd.pid and its log to /var/log/btc-dockerd.log. It keeps running for
# later runs; stop it with: kill "$(cat /run/btc-dockerd.pid)".
# DOCKERD_FLAGS adds daemon options. When the default bridge network cannot be set up (no
# iptables in a sandbox), the daemon is restarted without it: the flow containers use host
# networking anyway.
set -euo pipefail

PACKAGES=(docker.io debootstrap docker-compose)
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
PID_FILE=/run/btc-dockerd.pid
LOG_FILE=/var/log/btc-dockerd.log

say() { echo "provision: $*"; }

[ "$(id -u)" = 0 ] || { say "run as root (apt-get and dockerd need it)"; exit 1; }

apt_install_missing provision "${PACKAGES[@]}"

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

# The PID of the dockerd this script started, if it still runs (a stale file is ignored).
our_dockerd() {
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

wait_for_docker() {
    for _ in $(seq 1 60); do
        docker_ok && return 0
        our_dockerd >/dev/null || return 1
        sleep 1
    done
    return 1
}

start_dockerd() {
    # setsid + redirections: the daemon outlives this script and holds none of the caller's pipes.
    # shellcheck disable=SC2086
    setsid dockerd --host=unix:///var/run/docker.sock ${DOCKERD_FLAGS:-} "$@" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
}

if docker_ok; then
    say "a Docker daemon already answers"
else
    if pid="$(our_dockerd)"; then
        say "dockerd (PID $pid) is starting"
    else
        start_dockerd
    fi
    if ! wait_for_docker; then
        say "dockerd did not come up with a bridge network; retrying with host networking only"
        if pid="$(our_dockerd)"; then kill "$pid"; sleep 3; fi
        start_dockerd --bridge=none --iptables=false --ip6tables=false
        wait_for_docker || { say "dockerd failed; see $LOG_FILE"; tail -20 "$LOG_FILE"; exit 1; }
    fi
    say "dockerd running, PID $(cat "$PID_FILE"), log $LOG_FILE"
fi
docker version --format 'provision: Docker engine {{.Server.Version}} (API {{.Server.APIVersion}})'
