#!/usr/bin/env bash
# Provision this machine for the operations tests (tests/ops/, docs/operations.md): HAProxy (the
# load balancer in front of the API replicas), Prometheus and promtool (metrics, alert rules),
# supervisor (restarts a replica that dies) and redis-server, all from Debian's packages.
#
#   sudo infra/provision-ops.sh      # idempotent and quiet: installs only what is missing
#
# The packages' own services are not started (policy-rc.d): deployments/ha.py and the tests start
# what they need, on their own ports, and stop it by PID.
set -euo pipefail

PACKAGES=(haproxy prometheus supervisor redis-server)
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

say() { echo "provision-ops: $*"; }

apt_install_missing provision-ops "${PACKAGES[@]}"
say "$(haproxy -v | head -1); $(prometheus --version 2>&1 | head -1); supervisord $(supervisord --version)"
