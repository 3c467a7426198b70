#!/usr/bin/env bash
# Runs a command against a running server: the one that already answers on BASE_URL, or else
# one this script builds and starts (with its database, see db.sh up) and stops afterwards.
#
#   scripts/with-server.sh CMD [ARGS...]
#
# BASE_URL       server to use (default http://127.0.0.1:$PORT, PORT defaulting to 8080)
# BUILD_PROFILE  cargo profile of the server started here (default release)
#
# CMD sees BASE_URL, and DATABASE_URL as the server gets it (from DATABASE_URL or POSTGRES_*,
# .env included). A server that was already running is assumed to use that database too.
# The server this script starts logs to .data/server.log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$#" -gt 0 ] || die "usage: $0 CMD [ARGS...]"
load_env
BASE_URL="$(default_base_url)"
export BASE_URL
SERVER_LOG="$DATA/server.log"
# How long a started server may take to be ready (it migrates the database first).
READY_WITHIN=60

server_pid=""
db_started=0

# Any HTTP answer counts: a server that is up but unhealthy is still not ours to replace.
answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE_URL/health")" != "000" ]; }

# The port in BASE_URL, where the started server must listen.
base_url_port() {
  local hostport="${BASE_URL#*://}"
  hostport="${hostport%%/*}"
  [[ "$hostport" =~ :([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}" || echo 80
}

cleanup() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    say "with-server: stopping the server (pid $server_pid)"
    kill -TERM "$server_pid" 2>/dev/null || true
    # Graceful shutdown lets in-flight requests finish; actix gives them 30 s at most.
    for _ in $(seq 1 70); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$db_started" -eq 1 ]; then
    "$ROOT/scripts/db.sh" down || true
  fi
  exit "$status"
}

start_database() {
  local dev_before=0 compose_before=0
  is_running "$DATA/postgres" && dev_before=1
  [ -f "$DATA/compose-started" ] && compose_before=1
  # db.sh up uses DATABASE_URL as is when set, and otherwise starts a private cluster or Docker
  # when nothing answers; it is ours to stop only if it was not running before.
  "$ROOT/scripts/db.sh" up
  if { [ "$dev_before" -eq 0 ] && is_running "$DATA/postgres"; } ||
    { [ "$compose_before" -eq 0 ] && [ -f "$DATA/compose-started" ]; }; then
    db_started=1
  fi
}

start_server() {
  mkdir -p "$DATA"
  PORT="${PORT:-$(base_url_port)}" HOST="${HOST:-127.0.0.1}" \
    "$(bin_path order-service)" >"$SERVER_LOG" 2>&1 &
  server_pid=$!
  say "with-server: started the server (pid $server_pid), logging to .data/server.log"
  wait_until_ready "$BASE_URL" "$server_pid" "$SERVER_LOG" "$READY_WITHIN"
}

if answers; then
  say "with-server: using the server that answers on $BASE_URL"
else
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  say "with-server: no server answers on $BASE_URL; building and starting one"
  build_bins
  start_database
  start_server
fi

DATABASE_URL="$(server_database_url)"
export DATABASE_URL
"$@"
