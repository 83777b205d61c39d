#!/usr/bin/env bash
# The local base image of the flow runtime, for machines that reach no container registry:
# a minimal Debian root made with debootstrap (Python 3.11 and venv from Debian) and imported
# into Docker with `docker import`. With a registry, use a public image instead:
#   docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm -f infra/Dockerfile .
#
#   infra/make-base-image.sh [TAG]    # default btc-base:bookworm-py3.11; kept if it exists (FORCE=1 rebuilds)
#
# SUITE (default bookworm) and PACKAGES (default python3,python3-venv,ca-certificates) make other
# roots from the same recipe: the tests' stock Debian server is
#   SUITE=bookworm PACKAGES=python3,make,git,ca-certificates infra/make-base-image.sh btc-fresh:bookworm
#
# Needs root, debootstrap and a Docker daemon (infra/provision.sh installs and starts them).
# DEBIAN_MIRROR overrides the mirror (default: the one apt uses, else deb.debian.org).
set -euo pipefail

TAG="${1:-btc-base:bookworm-py3.11}"
SUITE="${SUITE:-bookworm}"
PACKAGES="${PACKAGES:-python3,python3-venv,ca-certificates}"

if [ -z "${FORCE:-}" ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG exists (FORCE=1 rebuilds it)"
    exit 0
fi

default_mirror() {
    # The first Debian mirror apt is configured with (deb822 or one-line sources), if any.
    grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
        head -1 | tr -d ' ' || true
}
MIRROR="${DEBIAN_MIRROR:-$(default_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

root="$(mktemp -d /tmp/btc-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
echo "debootstrap $SUITE ($PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 ||
    { tail -20 "$root.log"; exit 1; }
rm -f "$root.log"
# Smaller image: no package lists, caches, manuals or translations (copyright files stay).
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*
find "$root"/usr/share/doc -mindepth 2 ! -name copyright -type f -delete

tar --numeric-owner -C "$root" -c . |
    docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "debootstrap --variant=minbase $SUITE + $PACKAGES" \
        - "$TAG" >/dev/null
echo "built $TAG in $(($(date +%s) - start)) s: $(docker image inspect "$TAG" --format '{{.Size}}' | numfmt --to=iec) "
