#!/usr/bin/env bash
# Provision this machine for the browser test (tests/e2e/test_browser.py): headless Chromium and
# its WebDriver from Debian's packages (chromium, chromium-driver). Selenium Manager and
# Playwright's browser downloads need the internet; Debian's packages need only the apt mirror.
#
#   sudo infra/provision-browser.sh     # idempotent and quiet: installs only what is missing
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)

say() { echo "provision-browser: $*"; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { say "missing ${missing[*]}; run as root (apt-get needs it)"; exit 1; }
    say "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
say "$(chromium --version 2>/dev/null | head -1); $(chromedriver --version 2>/dev/null | head -1)"
