#!/bin/sh
# Entry point of the PostgreSQL image that scripts/container.sh builds from Debian's packages
# for `make test-container`, where the official postgres image cannot be pulled. It does the
# part of that image's entry point that docker-compose.yml relies on: on first start, a cluster
# in PGDATA whose superuser is POSTGRES_USER with POSTGRES_PASSWORD, the database POSTGRES_DB,
# and password logins from other containers; then PostgreSQL runs as PID 1.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
[ -n "${POSTGRES_PASSWORD:-}" ] || { echo "postgres-entrypoint: set POSTGRES_PASSWORD" >&2; exit 1; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  # initdb allows the loopback addresses only; the service connects over the compose network.
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  # Single-user mode, so that nothing listens before the database exists.
  printf 'CREATE DATABASE "%s"\n' "$POSTGRES_DB" | postgres --single -D "$PGDATA" -j postgres >/dev/null
fi
# JIT is off: this image leaves out LLVM, which JIT needs and little else does.
exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off
