#!/usr/bin/env bash
# `make bench`: the headline benchmark. In one run, on one PostgreSQL with its durable
# defaults (fsync and synchronous_commit on), it measures side by side:
#   create  pgbench -M prepared, one order per transaction (scripts/bench/create-order.sql),
#           against our POST /api/v1/orders driven by the stress client, at each of CLIENTS;
#   get     pgbench running the two SELECTs of a read (scripts/bench/get-order.sql) against
#           our GET /api/v1/orders/{id}, at 100 clients;
# and at 100 clients, pgbench running the very statements the server sends for a request, in
# its own text (as pg_stat_statements shows them), against that request, for
#   list    the newest page, the page and then its items (scripts/bench/list-orders.sql), against
#           our GET /api/v1/orders?limit=10, and again, without a pgbench figure, with
#           Accept-Encoding: gzip (what compression costs);
#   events  the feed's first page, then the orders of its events and their items
#           (scripts/bench/list-events.sql), against our GET /api/v1/events?limit=10, right
#           after list so that the two page rates can be compared;
#   list pending  the same for one status (scripts/bench/list-orders-by-status.sql) against our
#           GET /api/v1/orders?status=pending&limit=10;
#   status  the transaction of a move (scripts/bench/change-status.sql), each pgbench
#           transaction moving another of the orders created so far, against our
#           PUT /api/v1/orders/{id}/status {"status":"processing"}, each request moving another
#           of the orders the stress client creates first, unmeasured: as many as pgbench's
#           rate moves in the warm-up and the run;
#   create+hook  creates at 100 clients again, on a server that also delivers every event to a
#           webhook receiver on loopback (webhook-receiver of crates/stress, BENCH_HOOK_PORT, 18091);
#   seed extreme  first of all, on the empty database: the seed's extreme stress test as its Go
#           client sends it (10,000 orders, 500 in flight, at most 2 idle connections, gzip
#           asked for), with its wall time and the server's and PostgreSQL's CPU per order;
# and prints a table with the ratios, the stress client's p50/p99 and the server's peak RSS.
#
#   DURATION=10 CLIENTS="100 500" scripts/bench.sh
#
# It uses its own cluster (.data/postgres-bench, port BENCH_PG_PORT, default 25462) and a
# fresh database, starts a release server on BENCH_HTTP_PORT (default 18090), and stops both.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DURATION="${DURATION:-10}"
WARMUP=2
CLIENTS="${CLIENTS:-100 500}"
PG_PORT="${BENCH_PG_PORT:-25462}"
HTTP_PORT="${BENCH_HTTP_PORT:-18090}"
DB=ordersvc_bench
DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB"
BASE_URL="http://127.0.0.1:$HTTP_PORT"
PSQL=(psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1)

command -v pgbench >/dev/null || die "pgbench not found. Install it with: sudo apt-get install postgresql-contrib (or postgresql)"

build_bins
cluster_started="$(bench_cluster_up "$PG_PORT")"
server=""
receiver=""
cleanup() {
  stop_child "$server"
  stop_child "$receiver"
  if [ "$cluster_started" -eq 1 ]; then BENCH_PG_PORT="$PG_PORT" scripts/db.sh bench-down; fi
}
trap cleanup EXIT

"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
# start_server [VAR=value …]: the release server on the bench database, with extra settings.
start_server() {
  env DATABASE_URL="$DB_URL" PORT="$HTTP_PORT" RUST_LOG=warn "$@" \
    "$(bin_path order-service)" >"$DATA/bench-server.log" 2>&1 &
  server=$!
  wait_until_ready "$BASE_URL" "$server" "$DATA/bench-server.log" 60
}
stop_server() {
  stop_child "$server"
  server=""
}
start_server

peak_rss_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status"; }
pgbench_tps() {
  pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared -j 2 -T "$DURATION" "$@" "$DB" \
    2>/dev/null | sed -n 's/^tps = \([0-9]*\).*/\1/p'
}
stress() {
  "$(bin_path stress)" --base-url "$BASE_URL" --database-url "$DB_URL" \
    --duration "${DURATION}s" --warmup "${WARMUP}s" "$@" | tee -a "$DATA/bench-stress.log" | grep '^RESULT'
}

# page_ids [CONDITION]: the ids of the first list page of the orders that meet CONDITION (a
# WHERE clause), newest first, as the server binds them when it reads the page's items.
page_ids() {
  "${PSQL[@]}" -d "$DB" -tAc "SELECT array_agg(id ORDER BY created_at DESC, id DESC)
    FROM (SELECT id, created_at FROM orders ${1:-} ORDER BY created_at DESC, id DESC LIMIT 10) AS page"
}

rows=()
# row WORKLOAD CLIENTS PGBENCH RESULT
row() {
  local ratio="-"
  [ "$3" != "-" ] && ratio="$(awk -v a="$(field per_sec "$4")" -v b="$3" 'BEGIN { printf "%.2f", a / b }')"
  rows+=("$(printf '%-12s %7s %10s %10s %6s %7s %7s %8s %9s %8s' "$1" "$2" "$3" \
    "$(field per_sec "$4")" "$ratio" "$(field p50_ms "$4")" "$(field p99_ms "$4")" \
    "$(field success_pct "$4")" "$(field verified "$4")" "$(peak_rss_mb)")")
}

: >"$DATA/bench-stress.log"
# The seed's extreme stress test first, on the empty database, as a user runs it; its wall time
# and the CPU per order of the server and of PostgreSQL (from /proc) are printed under the table.
say "bench: the seed's extreme stress test (10,000 orders, 500 in flight, 2 idle connections)"
postmaster="$(head -n 1 "$DATA/postgres-bench/postmaster.pid")"
server_before="$(own_ticks "$server")"
pg_before="$(pg_ticks "$postmaster")"
seed="$("$(bin_path stress)" --base-url "$BASE_URL" "${SEED_EXTREME_FLAGS[@]}" --no-verify |
  tee -a "$DATA/bench-stress.log" | grep '^RESULT')"
seed_cpu="server $(micros_per $(($(own_ticks "$server") - server_before)) "$(field sent "$seed")") µs"
seed_cpu+=" and PostgreSQL $(micros_per $(($(pg_ticks "$postmaster") - pg_before)) "$(field sent "$seed")") µs"
row "seed extreme" 500 "-" "$seed"
for clients in $CLIENTS; do
  say "bench: create at $clients clients: pgbench, then ordersvc"
  ceiling="$(pgbench_tps -f scripts/bench/create-order.sql -c "$clients")"
  row "create" "$clients" "$ceiling" "$(stress --mode create --concurrency "$clients")"
  if [ "$clients" = 100 ]; then
    say "bench: get by id at 100 clients: pgbench, then ordersvc"
    read -r min_id max_id < <("${PSQL[@]}" -d "$DB" -tA -F ' ' -c "SELECT min(id), max(id) FROM orders")
    ceiling="$(pgbench_tps -f scripts/bench/get-order.sql -c 100 -D min_id="$min_id" -D max_id="$max_id")"
    row "get by id" 100 "$ceiling" "$(stress --mode get --concurrency 100)"
    say "bench: list pages at 100 clients: pgbench, then ordersvc"
    ceiling="$(pgbench_tps -f scripts/bench/list-orders.sql -c 100 -D page_ids="$(page_ids)")"
    row "list" 100 "$ceiling" "$(stress --mode list --concurrency 100)"
    say "bench: event feed pages at 100 clients: pgbench, then ordersvc"
    order_ids="$("${PSQL[@]}" -d "$DB" -tAc "SELECT array_agg(order_id ORDER BY tx_id, id)
      FILTER (WHERE data IS NULL) FROM (SELECT * FROM order_events ORDER BY tx_id, id LIMIT 10) AS page")"
    ceiling="$(pgbench_tps -f scripts/bench/list-events.sql -c 100 -D order_ids="$order_ids")"
    row "events" 100 "$ceiling" "$(stress --mode events --concurrency 100)"
    say "bench: list pages at 100 clients, gzip asked for"
    row "list gzip" 100 "-" "$(stress --mode list --concurrency 100 --accept-encoding gzip)"
    say "bench: list pages of pending orders at 100 clients: pgbench, then ordersvc"
    ceiling="$(pgbench_tps -f scripts/bench/list-orders-by-status.sql -c 100 -D status=pending \
      -D page_ids="$(page_ids "WHERE status = 'pending'")")"
    row "list pending" 100 "$ceiling" \
      "$(stress --mode list --list-query 'status=pending&limit=10' --concurrency 100)"
    # Last at 100 clients: it creates orders and moves them, which changes the pages read above.
    say "bench: status changes at 100 clients: pgbench, then ordersvc"
    pending="$("${PSQL[@]}" -d "$DB" -tAc "SELECT count(*) FROM orders
      WHERE id BETWEEN $min_id AND $max_id AND status = 'pending'")"
    [ "$pending" -eq $((max_id - min_id + 1)) ] ||
      die "orders $min_id to $max_id are not all there and pending: change-status.sql would fail"
    order_json="$(curl -fs "$BASE_URL/api/v1/orders/$min_id" | sed 's/"status":"pending"/"status":"processing"/')"
    ceiling="$(pgbench_tps -f scripts/bench/change-status.sql -c 100 -D min_id="$min_id" \
      -D max_id="$max_id" -D clients=100 -D moved=0 -D from=pending -D to=processing -D urls='{}' \
      -D order_json="$order_json")"
    [ $((ceiling * DURATION)) -le "$pending" ] ||
      say "bench: pgbench ran out of its $pending pending orders and moved some twice (see change-status.sql)"
    row "status" 100 "$ceiling" \
      "$(stress --mode status --concurrency 100 --orders $((ceiling * (WARMUP + DURATION))))"
  fi
done

# Creates again, with every event also delivered to one webhook receiver (on loopback): what the
# delivery rows and the dispatcher cost the create path.
HOOK_PORT="${BENCH_HOOK_PORT:-18091}"
say "bench: create at 100 clients, with one webhook URL"
"$(bin_path webhook-receiver)" "$HOOK_PORT" &
receiver=$!
stop_server
start_server WEBHOOK_URLS="http://127.0.0.1:$HOOK_PORT/" \
  WEBHOOK_SECRET="whsec_$(printf 'bench-webhook-secret-of-32-bytes' | base64)"
row "create+hook" 100 "-" "$(stress --mode create --concurrency 100)"

echo
echo "ordersvc benchmark: $(nproc) cores, $("${PSQL[@]}" -d postgres -tAc 'SELECT version()' | cut -d' ' -f1-2)," \
  "fsync=$("${PSQL[@]}" -d postgres -tAc 'SHOW fsync'), synchronous_commit=$("${PSQL[@]}" -d postgres -tAc 'SHOW synchronous_commit'), ${DURATION}s per run"
printf '%-12s %7s %10s %10s %6s %7s %7s %8s %9s %8s\n' workload clients "pgbench/s" "ordersvc/s" ratio "p50 ms" "p99 ms" "success%" verified "RSS MB"
printf '%s\n' "${rows[@]}"
echo "(pgbench/s: transactions per second of the same database work; RSS: the server's peak so far)"
echo "seed extreme: 10,000 orders, 500 in flight, at most 2 idle connections, gzip asked for:" \
  "$(awk -v n="$(field ok "$seed")" -v r="$(field per_sec "$seed")" 'BEGIN { printf "%.2f s", n / r }'),"\
  "$(field per_sec "$seed") orders/s; CPU per order: $seed_cpu"
