#!/usr/bin/env bash
# `make bench-ab A=<revision> [B=<revision>]`: did a change give create speed back?
#
# Builds the server of each git revision (B defaults to HEAD), then runs creates from the stress
# client at CLIENTS (100) in flight for DURATION (10) seconds against A, B, A, B … for ROUNDS (5)
# rounds, each run on a fresh database of the bench cluster (the one `make bench` uses, with its
# durable settings). It prints every run and, per side, the medians of: creates per second, and
# CPU per created order of the server and of PostgreSQL's backends (from /proc, so it holds
# even when the machine is busy). Runs on this machine differ by ±15% from one minute to the
# next; alternating the sides spreads that over both, and B/A is taken per round.
#
# HOOK=A, HOOK=B or HOOK=AB runs that side's servers with one webhook URL, a receiver on
# loopback (webhook-receiver of crates/stress) that answers 204; each such run also prints the
# receiver's CPU per order and how many of the run's orders had their event delivered when the
# server stopped.
#
#   make bench-ab A=fd18c28                      # that commit against HEAD
#   make bench-ab A=HEAD HOOK=B                  # what one webhook URL costs HEAD's creates
#   ROUNDS=7 CLIENTS=500 scripts/bench-ab.sh fd18c28 HEAD
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

A="${1:-${A:-}}"
B="${2:-${B:-HEAD}}"
[ -n "$A" ] || die "usage: scripts/bench-ab.sh REVISION_A [REVISION_B, default HEAD] (or make bench-ab A=…)"
ROUNDS="${ROUNDS:-5}"
CLIENTS="${CLIENTS:-100}"
DURATION="${DURATION:-10}"
PG_PORT="${BENCH_PG_PORT:-55462}"
HTTP_PORT="${BENCH_HTTP_PORT:-18090}"
HOOK="${HOOK:-}"
HOOK_PORT="${BENCH_HOOK_PORT:-18091}"
DB=ordersvc_ab
BASE_URL="http://127.0.0.1:$HTTP_PORT"
PSQL=(psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1)
WORK="$DATA/bench-ab"

# server_of REVISION: builds that revision's server in a worktree of its own (one target
# directory for all, so dependencies build once) and prints where its binary is.
server_of() {
  local commit dir
  commit="$(git rev-parse --short "$1^{commit}")" || die "no such revision: $1"
  dir="$WORK/src-$commit"
  if [ ! -x "$WORK/order-service-$commit" ]; then
    [ -d "$dir" ] || git worktree add --detach "$dir" "$commit" >&2
    say "bench-ab: building the server of $1 ($commit)"
    (cd "$dir" && CARGO_TARGET_DIR="$WORK/target" cargo build --release --locked --bin order-service >&2)
    cp "$WORK/target/release/order-service" "$WORK/order-service-$commit"
  fi
  printf '%s' "$WORK/order-service-$commit"
}

mkdir -p "$WORK"
server_a="$(server_of "$A")"
server_b="$(server_of "$B")"
build_bins
stress_bin="$(bin_path stress)"

cluster_started="$(bench_cluster_up "$PG_PORT")"
server=""
receiver=""
cleanup() {
  stop_child "$server"
  stop_child "$receiver"
  if [ "$cluster_started" -eq 1 ]; then BENCH_PG_PORT="$PG_PORT" scripts/db.sh bench-down; fi
}
trap cleanup EXIT

postmaster="$(head -n 1 "$DATA/postgres-bench/postmaster.pid")"
ticks="$(getconf CLK_TCK)"
# CPU ticks of the postmaster's ended children: backends are counted once the server that held
# them has stopped and they have exited.
children_ticks() { awk '{ print $16 + $17 }' "/proc/$postmaster/stat"; }
own_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

if [ -n "$HOOK" ]; then
  "$(bin_path webhook-receiver)" "$HOOK_PORT" 2>/dev/null &
  receiver=$!
fi

# run SIDE BINARY: one create run on a fresh database; sets RUN to "per_sec server_us postgres_us
# receiver_us delivered_percent" (the last two "-" without a webhook). (Not printed: in a
# subshell, a server left by a failure would escape the cleanup.)
run() {
  local hook=() before hook_before line served orders receiver_us="-" delivered="-"
  case "$HOOK" in *"$1"*) hook=(WEBHOOK_URLS="http://127.0.0.1:$HOOK_PORT/"
    WEBHOOK_SECRET="whsec_$(printf 'bench-webhook-secret-of-32-bytes' | base64)") ;; esac
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  before="$(children_ticks)"
  [ -z "$receiver" ] || hook_before="$(own_ticks "$receiver")"
  env DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB" PORT="$HTTP_PORT" RUST_LOG=warn \
    "${hook[@]}" "$2" >"$DATA/bench-ab-server.log" 2>&1 &
  server=$!
  # /health: older revisions have no /health/ready.
  wait_until_ready "$BASE_URL" "$server" "$DATA/bench-ab-server.log" 60 /health
  line="$("$stress_bin" --base-url "$BASE_URL" --mode create --concurrency "$CLIENTS" \
    --duration "${DURATION}s" --warmup 2s --no-verify | grep '^RESULT')"
  served="$(own_ticks "$server")"
  stop_child "$server"
  server=""
  sleep 1
  orders="$("${PSQL[@]}" -d "$DB" -tAc 'SELECT count(*) FROM orders')"
  if [ ${#hook[@]} -gt 0 ]; then
    receiver_us="$(awk -v t="$(($(own_ticks "$receiver") - hook_before))" -v ticks="$ticks" \
      -v orders="$orders" 'BEGIN { printf "%.1f", t / ticks / orders * 1e6 }')"
    delivered="$("${PSQL[@]}" -d "$DB" -tAc "SELECT round(100.0 * count(*) / $orders, 1)
      FROM webhook_deliveries WHERE state = 'delivered'")"
  fi
  RUN="$(awk -v line="$line" -v served="$served" -v pg="$(($(children_ticks) - before))" \
    -v orders="$orders" -v ticks="$ticks" 'BEGIN {
      match(line, /per_sec=[0-9.]+/); rate = substr(line, RSTART + 8, RLENGTH - 8)
      printf "%s %.1f %.1f", rate, served / ticks / orders * 1e6, pg / ticks / orders * 1e6
    }') $receiver_us $delivered"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

say "bench-ab: creates at $CLIENTS clients, ${DURATION}s per run, $ROUNDS rounds of A=$A, B=$B${HOOK:+, webhook on $HOOK}"
results="$WORK/runs.txt"
: >"$results"
for round in $(seq "$ROUNDS"); do
  run A "$server_a"
  read -r rate_a server_us_a pg_us_a hook_us_a delivered_a <<<"$RUN"
  run B "$server_b"
  read -r rate_b server_us_b pg_us_b hook_us_b delivered_b <<<"$RUN"
  echo "$round $rate_a $server_us_a $pg_us_a $rate_b $server_us_b $pg_us_b $hook_us_a $hook_us_b" >>"$results"
  printf 'round %s: A %8.1f/s (server %5.1f µs, postgres %5.1f µs per order)   B %8.1f/s (server %5.1f µs, postgres %5.1f µs)\n' \
    "$round" "$rate_a" "$server_us_a" "$pg_us_a" "$rate_b" "$server_us_b" "$pg_us_b"
  for side in A B; do
    hook_us="hook_us_${side,}"; delivered="delivered_${side,}"
    [ "${!hook_us}" = "-" ] ||
      printf '         %s with a webhook: receiver %5.1f µs per order; %s%% of the orders delivered when the server stopped\n' \
        "$side" "${!hook_us}" "${!delivered}"
  done
done

echo
echo "medians over $ROUNDS rounds, creates at $CLIENTS clients, ${DURATION}s per run${HOOK:+, webhook on $HOOK}:"
printf '  A %-12s %8.1f/s   server %5.1f µs   postgres %5.1f µs per order\n' "$A" \
  "$(cut -d' ' -f2 "$results" | median)" "$(cut -d' ' -f3 "$results" | median)" "$(cut -d' ' -f4 "$results" | median)"
printf '  B %-12s %8.1f/s   server %5.1f µs   postgres %5.1f µs per order\n' "$B" \
  "$(cut -d' ' -f5 "$results" | median)" "$(cut -d' ' -f6 "$results" | median)" "$(cut -d' ' -f7 "$results" | median)"
printf '  B/A per round, median: %.2f\n' "$(awk '{ print $5 / $2 }' "$results" | median)"
