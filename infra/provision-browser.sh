#!/usr/bin/env bash
# Provision this machine for the browser test (tests/e2e/test_browser.py): headless Chromium and
# its WebDriver from Debian's packages (chromium, chromium-driver). Selenium Manager and
# Playwright's browser downloads need the internet; Debian's packages need only the apt mirror.
#
#   sudo infra/provision-browser.sh     # idempotent and quiet: installs only what is missing
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

say() { echo "provision-browser: $*"; }

apt_install_missing provision-browser "${PACKAGES[@]}"
say "$(chromium --version 2>/dev/null | head -1); $(chromedriver --version 2>/dev/null | head -1)"
