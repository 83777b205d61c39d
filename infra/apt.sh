# Sourced by the provision scripts: install the Debian packages that are missing, quietly, and
# keep their init scripts from starting services (policy-rc.d): the project and its tests start
# what they need, on their own ports, and stop it by PID.
#
#   apt_install_missing <name for messages> <package>...

apt_install_missing() {
    local who=$1 pkg created_policy=0
    shift
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || { echo "$who: missing ${missing[*]}; run as root (apt-get needs it)"; return 1; }
    echo "$who: installing ${missing[*]}"
    # One install at a time: the provision scripts may run at once (parallel test workers), and
    # apt-get fails at once on a lock another apt-get holds; other apt users are waited for too.
    (
        flock -w 900 9 || { echo "$who: another install held the apt lock for 15 min"; exit 1; }
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            created_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
            --no-install-recommends "${missing[@]}" >/dev/null
        [ "$created_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
    ) 9>/run/btc-apt.lock
}
