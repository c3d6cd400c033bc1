#!/usr/bin/env bash
# PostgreSQL as the official image starts it. As root: hand PGDATA (a fresh bind mount is root's) to the
# postgres user and run again as that user. On first start (no PG_VERSION) make the cluster: superuser
# POSTGRES_USER with POSTGRES_PASSWORD, which every network client must give, and database POSTGRES_DB.
# Then become the server (exec), so that it gets the container's stop signal itself. Arguments go to
# `postgres` (`-c name=value`).
set -euo pipefail
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups bash "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?must be set: network clients log in with it}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then  # single-user mode: no server to start and stop for one statement
        postgres --single -D "$PGDATA" postgres <<<"CREATE DATABASE \"${db//\"/\"\"}\"" >/dev/null
    fi
fi
exec postgres -c listen_addresses='*' "$@"
