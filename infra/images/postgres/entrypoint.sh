#!/bin/sh
# First start on an empty data directory: initdb with POSTGRES_USER (default postgres) and
# POSTGRES_PASSWORD, password (scram-sha-256) authentication for every network client, listen on
# the container's interfaces, and the database POSTGRES_DB (default: the user's name). Later
# starts use the data as it is. Then run the command (postgres).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the password of POSTGRES_USER)}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    for name in "$user" "$db"; do
        case "$name" in
            *[!a-z0-9_]* | [0-9]*) echo "btc-postgres: '$name': use lowercase letters, digits, _" >&2; exit 2 ;;
        esac
    done
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE $db OWNER $user" | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
    echo "btc-postgres: initialized $PGDATA (user $user, database $db)"
fi
exec "$@"
