#!/usr/bin/env bash
# Database management for development and tests.
#
#   db.sh up         make sure the configured PostgreSQL answers (use it, or Docker, or start a
#                    private cluster under .data/postgres), then create the database if missing
#   db.sh down       stop what `up` started
#   db.sh reset      down, wipe the private cluster, up
#   db.sh test-up    start the private test cluster (.data/postgres-test, port $TEST_PG_PORT)
#   db.sh test-down  stop it
#   db.sh bench-up   start the private benchmark cluster (.data/postgres-bench, port
#                    $BENCH_PG_PORT): PostgreSQL's durable defaults, room for 500 clients
#   db.sh bench-down stop it (and its standby)
#   db.sh bench-standby-up    a streaming standby of the running benchmark cluster, copied afresh
#                             (.data/postgres-bench-standby, port $BENCH_STANDBY_PORT, 25463)
#   db.sh bench-standby-down  stop it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

load_env
HOST="${POSTGRES_HOST:-localhost}"
PORT="${POSTGRES_PORT:-5432}"
USER_NAME="${POSTGRES_USER:-user}"
PASSWORD="${POSTGRES_PASSWORD:-password}"
DBNAME="${POSTGRES_DBNAME:-orderdb}"
DEV_DIR="$DATA/postgres"
TEST_DIR="$DATA/postgres-test"
# Below the kernel's ephemeral range (32768–60999): a port there can be taken for a while by a
# client socket of a load run, and the cluster would not start.
TEST_PORT="${TEST_PG_PORT:-25432}"
BENCH_DIR="$DATA/postgres-bench"
BENCH_PORT="${BENCH_PG_PORT:-25462}"
STANDBY_DIR="$DATA/postgres-bench-standby"
STANDBY_PORT="${BENCH_STANDBY_PORT:-25463}"
COMPOSE_MARK="$DATA/compose-started"

answers() { pg_isready -q -h "$1" -p "$2" -t 2 >/dev/null 2>&1; }

docker_available() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

wait_until_answers() {
  for _ in $(seq 1 60); do
    answers "$1" "$2" && return 0
    sleep 0.5
  done
  die "PostgreSQL on $1:$2 did not come up in 30 s"
}

start_dev_cluster() {
  local bindir pwfile
  bindir="$(require_pg_bindir)"
  case "$HOST" in localhost | 127.0.0.1) ;; *) die "POSTGRES_HOST=$HOST does not answer, and a private cluster can only run on localhost" ;; esac
  prepare_cluster_dir "$DEV_DIR"
  if [ ! -f "$DEV_DIR/PG_VERSION" ]; then
    say "db: creating a private cluster in .data/postgres (superuser $USER_NAME)"
    pwfile="$DEV_DIR.pw"
    printf '%s\n' "$PASSWORD" >"$pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pwfile"
    as_pg "$bindir/initdb" -D "$DEV_DIR" -U "$USER_NAME" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
    rm -f "$pwfile"
  fi
  say "db: starting the private cluster on 127.0.0.1:$PORT"
  as_pg "$bindir/pg_ctl" -D "$DEV_DIR" -l "$DATA/postgres.log" -w -t 30 \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DEV_DIR" start >/dev/null
}

create_database() {
  local exists
  exists="$(PGPASSWORD="$PASSWORD" psql -h "$HOST" -p "$PORT" -U "$USER_NAME" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" ||
    die "cannot log in to PostgreSQL on $HOST:$PORT as $USER_NAME (check POSTGRES_USER / POSTGRES_PASSWORD)"
  if [ "$exists" != "1" ]; then
    PGPASSWORD="$PASSWORD" psql -q -h "$HOST" -p "$PORT" -U "$USER_NAME" -d postgres -c "CREATE DATABASE \"$DBNAME\""
    say "db: created database $DBNAME"
  fi
}

up() {
  if [ -n "${DATABASE_URL:-}" ]; then
    psql "$DATABASE_URL" -qtAc 'SELECT 1' >/dev/null || die "DATABASE_URL does not answer"
    say "db: DATABASE_URL answers; nothing to start"
    return 0
  fi
  mkdir -p "$DATA"
  if answers "$HOST" "$PORT"; then
    say "db: PostgreSQL answers on $HOST:$PORT"
  elif docker_available; then
    say "db: starting PostgreSQL with docker compose"
    (cd "$ROOT" && docker compose up -d --wait postgres)
    touch "$COMPOSE_MARK"
  elif pg_bindir >/dev/null; then
    start_dev_cluster
  else
    die "no PostgreSQL on $HOST:$PORT, no Docker engine, and no PostgreSQL binaries. Install them with: sudo apt-get install postgresql"
  fi
  wait_until_answers "$HOST" "$PORT"
  create_database
}

down() {
  local bindir
  if is_running "$DEV_DIR"; then
    bindir="$(pg_bindir)"
    as_pg "$bindir/pg_ctl" -D "$DEV_DIR" -m fast -w stop >/dev/null
    say "db: stopped the private cluster"
  elif [ -f "$COMPOSE_MARK" ]; then
    (cd "$ROOT" && docker compose down)
    rm -f "$COMPOSE_MARK"
  else
    say "db: nothing that we started is running"
  fi
}

# private_up DIR PORT OPTIONS...: start a private trust-auth cluster on loopback, creating it
# on first use.
private_up() {
  local bindir dir="$1" port="$2"
  shift 2
  bindir="$(require_pg_bindir)"
  is_running "$dir" && return 0
  mkdir -p "$DATA"
  prepare_cluster_dir "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_pg "$bindir/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir.log" -w -t 30 -o \
    "-p $port -c listen_addresses=127.0.0.1 -k $dir $*" start >/dev/null
}

# A streaming standby of the running benchmark cluster, copied afresh each time, for measuring
# reads served by a replica (bench-ab's READS).
standby_up() {
  local bindir
  bindir="$(require_pg_bindir)"
  is_running "$STANDBY_DIR" && return 0
  is_running "$BENCH_DIR" || die "the benchmark cluster is not running: scripts/db.sh bench-up first"
  rm -rf "$STANDBY_DIR"
  prepare_cluster_dir "$STANDBY_DIR"
  # PostgreSQL refuses a data folder others can read; pg_basebackup keeps the folder's mode.
  chmod 700 "$STANDBY_DIR"
  as_pg "$bindir/pg_basebackup" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -D "$STANDBY_DIR" \
    --write-recovery-conf --checkpoint=fast
  as_pg "$bindir/pg_ctl" -D "$STANDBY_DIR" -l "$STANDBY_DIR.log" -w -t 30 -o \
    "-p $STANDBY_PORT -c listen_addresses=127.0.0.1 -k $STANDBY_DIR -c max_connections=700" start >/dev/null
}

private_down() {
  local bindir
  is_running "$1" || return 0
  bindir="$(pg_bindir)"
  as_pg "$bindir/pg_ctl" -D "$1" -m fast -w stop >/dev/null
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  reset)
    down
    rm -rf "$DEV_DIR"
    up
    ;;
  # Throw-away data: durability off for speed. Benchmarks never use this cluster.
  test-up) private_up "$TEST_DIR" "$TEST_PORT" -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB ;;
  test-down) private_down "$TEST_DIR" ;;
  # Durable defaults (fsync, synchronous_commit on): benchmarks never trade durability for speed.
  bench-up) private_up "$BENCH_DIR" "$BENCH_PORT" -c max_connections=700 ;;
  bench-down) private_down "$STANDBY_DIR" && private_down "$BENCH_DIR" ;;
  bench-standby-up) standby_up ;;
  bench-standby-down) private_down "$STANDBY_DIR" ;;
  *) die "usage: $0 up|down|reset|test-up|test-down|bench-up|bench-down|bench-standby-up|bench-standby-down" ;;
esac
