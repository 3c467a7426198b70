#!/usr/bin/env bash
# `make bench-ab A=<revision> [B=<revision>]`: what a change costs or gives back, per operation.
#
# Builds the server of each git revision (B defaults to HEAD), then runs every row of ROWS
# against A, B, A, B … for ROUNDS (3) rounds, each side on a fresh database of the bench cluster
# (the one `make bench` uses, with its durable settings):
#   seed    the seed's extreme stress test as its Go client makes it: 10,000 orders, 500 in
#           flight, at most 2 idle connections (so nearly every request opens a connection),
#           Accept-Encoding: gzip on every request (as Go's transport sends it); run first, on
#           the empty database, as a user runs it;
#   create  creates at CLIENTS (100) in flight on keep-alive connections, DURATION (8) s;
#   get     reads of random orders by id, the same way;
#   list    list pages of 10, the same way.
# Per run it prints the throughput and the CPU per operation of the server and of PostgreSQL
# (all its processes: backends, WAL writer, checkpointer…), read from /proc around the run, so
# they hold even when the machine is busy; the seed row adds the orders per inserting
# transaction. Then, per row, the medians of each side and of B/A taken per round: runs on this
# machine differ by ±15% from one minute to the next, and alternating spreads that over both.
#
# HOOK=A, HOOK=B or HOOK=AB runs that side's servers with one webhook URL, a receiver on
# loopback (webhook-receiver of crates/stress) that answers 204; each create run then also
# prints the receiver's CPU per order.
#
# READS=A, READS=B or READS=AB runs that side's servers with DATABASE_READ_URL pointing at a
# streaming standby of the bench cluster (started here, port BENCH_STANDBY_PORT, 25463); the
# postgres column then counts both servers' CPU. TOKEN=A, B or AB makes that side's get and list
# rows send a Consistency-Token: the primary's position just before the row, which the standby
# has to have replayed.
#
#   make bench-ab A=fd18c28                        # that commit against HEAD
#   make bench-ab A=HEAD HOOK=B ROWS=create        # what one webhook URL costs HEAD's creates
#   ROUNDS=5 CLIENTS=500 scripts/bench-ab.sh fd18c28 HEAD
#   READS=B ROWS="create get list" scripts/bench-ab.sh HEAD HEAD   # reads on a replica, or not
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

A="${1:-${A:-}}"
B="${2:-${B:-HEAD}}"
[ -n "$A" ] || die "usage: scripts/bench-ab.sh REVISION_A [REVISION_B, default HEAD] (or make bench-ab A=…)"
ROUNDS="${ROUNDS:-3}"
ROWS="${ROWS:-seed create get list}"
CLIENTS="${CLIENTS:-100}"
DURATION="${DURATION:-8}"
PG_PORT="${BENCH_PG_PORT:-25462}"
HTTP_PORT="${BENCH_HTTP_PORT:-18090}"
HOOK="${HOOK:-}"
HOOK_PORT="${BENCH_HOOK_PORT:-18091}"
READS="${READS:-}"
TOKEN="${TOKEN:-}"
STANDBY_PORT="${BENCH_STANDBY_PORT:-25463}"
DB=ordersvc_ab
BASE_URL="http://127.0.0.1:$HTTP_PORT"
PSQL=(psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1)
WORK="$DATA/bench-ab"
for row in $ROWS; do
  case "$row" in seed | create | get | list) ;; *) die "ROWS: unknown row $row (seed, create, get, list)" ;; esac
done
# Reads read what the create row wrote: without it before them, they would measure an empty table.
created=0
for row in $ROWS; do
  case "$row" in
    create) created=1 ;;
    get | list) [ "$created" -eq 1 ] ||
      die "ROWS: $row reads the orders the create row writes; put create before it" ;;
  esac
done

# server_of REVISION: builds that revision's server in a worktree of its own (one target
# directory for all, so dependencies build once) and prints where its binary is.
server_of() {
  local commit dir
  commit="$(git rev-parse --short "$1^{commit}")" || die "no such revision: $1"
  dir="$WORK/src-$commit"
  if [ ! -x "$WORK/order-service-$commit" ]; then
    [ -d "$dir" ] || git worktree add --detach "$dir" "$commit" >&2
    # Revisions older than the workspace (fd18c28) would be taken for a member of ours, which it
    # does not list: an empty table of their own makes them a workspace alone.
    grep -q '^\[workspace\]' "$dir/Cargo.toml" || printf '\n[workspace]\n' >>"$dir/Cargo.toml"
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
  [ -z "$READS" ] || scripts/db.sh bench-standby-down
  if [ "$cluster_started" -eq 1 ]; then BENCH_PG_PORT="$PG_PORT" scripts/db.sh bench-down; fi
}
trap cleanup EXIT

postmaster="$(head -n 1 "$DATA/postgres-bench/postmaster.pid")"
standby=""
if [ -n "$READS" ]; then
  BENCH_PG_PORT="$PG_PORT" BENCH_STANDBY_PORT="$STANDBY_PORT" scripts/db.sh bench-standby-up
  standby="$(head -n 1 "$DATA/postgres-bench-standby/postmaster.pid")"
fi
# all_pg_ticks: the CPU ticks of the bench cluster, and of its standby when there is one.
all_pg_ticks() {
  local ticks
  ticks="$(pg_ticks "$postmaster")"
  [ -z "$standby" ] || ticks=$((ticks + $(pg_ticks "$standby")))
  echo "$ticks"
}

if [ -n "$HOOK" ]; then
  "$(bin_path webhook-receiver)" "$HOOK_PORT" 2>/dev/null &
  receiver=$!
fi

# stress_flags ROW SIDE
stress_flags() {
  case "$1" in
    seed) echo "${SEED_EXTREME_FLAGS[*]} --no-verify" ;;
    create) echo "--mode create --concurrency $CLIENTS --duration ${DURATION}s --warmup 2s --no-verify" ;;
    get | list)
      echo "--mode $1 --concurrency $CLIENTS --duration ${DURATION}s --warmup 2s"
      case "$TOKEN" in *"$2"*) echo "--consistency-token $("${PSQL[@]}" -d "$DB" -tAc 'SELECT pg_current_wal_insert_lsn()')" ;; esac
      ;;
  esac
}

results="$WORK/runs.txt"
: >"$results"
# side SIDE BINARY ROUND: a fresh database and server, then every row on it; appends one line
# per row to $results: "row round side per_sec server_us postgres_us" and prints it.
side() {
  local hook=() reads=() row line server_before pg_before hook_before sent server_us pg_us extra
  case "$HOOK" in *"$1"*) hook=(WEBHOOK_URLS="http://127.0.0.1:$HOOK_PORT/"
    WEBHOOK_SECRET="whsec_$(printf 'bench-webhook-secret-of-32-bytes' | base64)") ;; esac
  case "$READS" in *"$1"*) reads=(DATABASE_READ_URL="postgres://postgres@127.0.0.1:$STANDBY_PORT/$DB") ;; esac
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
  env DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB" PORT="$HTTP_PORT" RUST_LOG=warn \
    "${hook[@]}" "${reads[@]}" "$2" >"$DATA/bench-ab-server.log" 2>&1 &
  server=$!
  # /health: older revisions have no /health/ready.
  wait_until_ready "$BASE_URL" "$server" "$DATA/bench-ab-server.log" 60 /health
  for row in $ROWS; do
    server_before="$(own_ticks "$server")"
    pg_before="$(all_pg_ticks)"
    [ -z "$receiver" ] || hook_before="$(own_ticks "$receiver")"
    # shellcheck disable=SC2046 # the flags are words
    line="$("$stress_bin" --base-url "$BASE_URL" $(stress_flags "$row" "$1") | grep '^RESULT')"
    sent="$(field sent "$line")"
    server_us="$(micros_per $(($(own_ticks "$server") - server_before)) "$sent")"
    pg_us="$(micros_per $(($(all_pg_ticks) - pg_before)) "$sent")"
    extra=""
    if [ "$row" = seed ]; then
      extra="$(awk -v n="$(field ok "$line")" -v r="$(field per_sec "$line")" 'BEGIN { printf "%.2f s, ", n / r }')"
      extra+="$("${PSQL[@]}" -d "$DB" -tAc "SELECT round(count(*)::numeric / count(DISTINCT xmin::text), 1) FROM orders") orders per transaction"
    fi
    if [ ${#hook[@]} -gt 0 ] && [ "$row" = create ]; then
      extra="receiver $(micros_per $(($(own_ticks "$receiver") - hook_before)) "$sent") µs per order"
    fi
    [ "$(field failed "$line")" = 0 ] || extra+="${extra:+, }$(field failed "$line") FAILED"
    echo "$row $3 $1 $(field per_sec "$line") $server_us $pg_us" >>"$results"
    printf 'round %s %s %-6s %9.1f/s   server %6.1f µs   postgres %6.1f µs per op   %s\n' \
      "$3" "$1" "$row" "$(field per_sec "$line")" "$server_us" "$pg_us" "$extra"
  done
  stop_child "$server"
  server=""
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# column ROW SIDE N: field N of that row and side's runs, one per line.
column() { awk -v row="$1" -v side="$2" -v n="$3" '$1 == row && $3 == side { print $n }' "$results"; }
# ratios ROW N: B/A of field N per round.
ratios() {
  awk -v row="$1" -v n="$2" '$1 == row { v[$2, $3] = $n; r[$2] = 1 }
    END { for (k in r) if (v[k, "A"] > 0) print v[k, "B"] / v[k, "A"] }' "$results"
}

say "bench-ab: $ROWS; $ROUNDS rounds of A=$A, B=$B; keep-alive rows at $CLIENTS clients for ${DURATION}s${HOOK:+; webhook on $HOOK}${READS:+; reads on a standby on $READS}${TOKEN:+; tokens on $TOKEN}"
for round in $(seq "$ROUNDS"); do
  side A "$server_a" "$round"
  side B "$server_b" "$round"
done

echo
echo "medians over $ROUNDS rounds (A=$A, B=$B${HOOK:+, webhook on $HOOK}${READS:+, reads on a standby on $READS}${TOKEN:+, tokens on $TOKEN}); B/A is taken per round:"
printf '%-7s %11s %11s %7s   %-19s %-19s\n' row "A ops/s" "B ops/s" "B/A" "server µs A B B/A" "postgres µs A B B/A"
for row in $ROWS; do
  printf '%-7s %11.1f %11.1f %7.2f   %5.1f %5.1f %5.2f   %6.1f %6.1f %5.2f\n' "$row" \
    "$(column "$row" A 4 | median)" "$(column "$row" B 4 | median)" "$(ratios "$row" 4 | median)" \
    "$(column "$row" A 5 | median)" "$(column "$row" B 5 | median)" "$(ratios "$row" 5 | median)" \
    "$(column "$row" A 6 | median)" "$(column "$row" B 6 | median)" "$(ratios "$row" 6 | median)"
done
