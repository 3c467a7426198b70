#!/usr/bin/env bash
# A replicated stack on 127.0.0.1: one etcd member, three PostgreSQL nodes under Patroni (a
# leader and two standbys, synchronous mode), CLUSTER_INSTANCES service instances, and HAProxy
# in front of the instances, the current primary, and the standbys for reads.
#
#   cluster.sh up                 start whatever is not running (creating the cluster on first use)
#   cluster.sh down               stop everything it started, by PID (the data stays)
#   cluster.sh status             Patroni's view (leader, sync standby, lag), each instance's readiness
#   cluster.sh wipe               down, then delete the cluster's data
#   cluster.sh start-instance N [NODE]
#                                 start instance N and, if it is one of CLUSTER_INSTANCES, wait
#                                 until HAProxy sends it requests; with NODE (N above
#                                 CLUSTER_INSTANCES, so outside HAProxy), its reads go straight to
#                                 NODE's PostgreSQL instead of to the read port
#   cluster.sh stop-instance N    SIGTERM instance N, wait for it to exit, print its exit status
#   cluster.sh start-node NAME    start node NAME's Patroni (pg1, pg2, pg3)
#   cluster.sh stop-node NAME     stop node NAME's Patroni and its PostgreSQL
#   cluster.sh delay-node NAME D  standby NAME applies WAL D late (recovery_min_apply_delay: 500ms,
#                                 2s; 0 to stop); kept in NAME/apply-delay, so a restart keeps it
#   cluster.sh switchover         planned switchover from the leader to the synchronous standby
#   cluster.sh wait-healthy       wait until a leader, a synchronous standby and every node streams
#                                 within 1 MB of the leader
#
# CLUSTER_NAME       data under .data/cluster/$CLUSTER_NAME (default dev)
# CLUSTER_PORT       HAProxy's service port (default 8080)
# CLUSTER_BASE_PORT  the other ports (default 25000): +0 primary, +1/+2 etcd client/peer,
#                    +3 HAProxy stats, +4 standbys (reads), +11.. PostgreSQL nodes, +21.. Patroni
#                    REST, +31.. instances
# CLUSTER_INSTANCES  service instances (default 2)
# CLUSTER_DB_ROUTE   how the instances find the primary: haproxy (its primary port, default) or
#                    hosts (a URL naming every node, target_session_attrs=read-write)
# CLUSTER_READS      where the instances read: replicas (DATABASE_READ_URL is HAProxy's read port,
#                    default) or primary (no read pool: every read on the primary)
# SHUTDOWN_GRACE     how long a SIGTERMed instance keeps serving while HAProxy takes it out (3s)
# BUILD_PROFILE      cargo profile of the service binary (default release)
# PATRONI_TTL, PATRONI_LOOP_WAIT, PATRONI_RETRY_TIMEOUT  Patroni timings at creation (10, 2, 4)
#
# Files in .data/cluster/$CLUSTER_NAME: cluster.env (URLs for clients and tests, mode 600),
# etcd.pid, haproxy.pid, instance-N.pid / instance-N.exit / instance-N.log, and per node
# pgN/patroni.yml, pgN/patroni.pid, pgN/patroni.log, pgN/apply-delay (if delayed), pgN/data
# (postmaster.pid inside).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_NAME="${CLUSTER_NAME:-dev}"
CDIR="$DATA/cluster/$CLUSTER_NAME"
CLUSTER_PORT="${CLUSTER_PORT:-8080}"
BASE="${CLUSTER_BASE_PORT:-25000}"
INSTANCES="${CLUSTER_INSTANCES:-2}"
SHUTDOWN_GRACE="${SHUTDOWN_GRACE:-3s}"
PATRONI_TTL="${PATRONI_TTL:-10}"
PATRONI_LOOP_WAIT="${PATRONI_LOOP_WAIT:-2}"
PATRONI_RETRY_TIMEOUT="${PATRONI_RETRY_TIMEOUT:-4}"
DB_ROUTE="${CLUSTER_DB_ROUTE:-haproxy}"
[[ "$DB_ROUTE" =~ ^(haproxy|hosts)$ ]] || die "CLUSTER_DB_ROUTE must be haproxy or hosts (got $DB_ROUTE)"
READS="${CLUSTER_READS:-replicas}"
[[ "$READS" =~ ^(replicas|primary)$ ]] || die "CLUSTER_READS must be replicas or primary (got $READS)"
# The instances' readiness route, which HAProxy checks.
HEALTH_PATH="${CLUSTER_HEALTH_PATH:-/health/ready}"
PRIMARY_PORT=$BASE
ETCD_PORT=$((BASE + 1))
ETCD_PEER_PORT=$((BASE + 2))
STATS_PORT=$((BASE + 3))
READ_PORT=$((BASE + 4))
# A standby takes reads while Patroni finds its replayed WAL within this many bytes of the
# leader's position: several thousand orders here (about 2 kB of WAL each). Patroni compares with
# the position the leader last published in etcd (every loop_wait), so the bound is coarse: it
# takes out a standby that stops replaying or falls far behind, while the service's own time
# bound (DB_READ_MAX_LAG) and the consistency tokens decide each read.
REPLICA_MAX_LAG=16MB
NODES=(pg1 pg2 pg3)
DB_NAME=orderdb
APP_USER=ordersvc
TEMPLATES="$ROOT/scripts/cluster"

[[ "$INSTANCES" =~ ^[1-9]$ ]] || die "CLUSTER_INSTANCES must be 1 to 9 (got $INSTANCES)"

node_index() {
  local i
  for i in "${!NODES[@]}"; do
    [ "${NODES[$i]}" = "$1" ] && { echo $((i + 1)); return; }
  done
  die "no node named $1 (nodes: ${NODES[*]})"
}
pg_port() { echo $((BASE + 10 + $(node_index "$1"))); }
rest_port() { echo $((BASE + 20 + $(node_index "$1"))); }
instance_port() { echo $((BASE + 30 + $1)); }

# render TEMPLATE: the template with every @NAME@ in it replaced by the shell variable NAME (set -u
# stops on a name that is not set).
render() {
  local text name
  text="$(<"$1")"
  while [[ "$text" =~ @([A-Z_]+)@ ]]; do
    name="${BASH_REMATCH[1]}"
    text="${text//@$name@/${!name}}"
  done
  printf '%s\n' "$text"
}

alive() { [ -f "$1" ] && kill -0 "$(<"$1")" 2>/dev/null; }

# stop_pid PIDFILE SECONDS: SIGTERM, then SIGKILL if still there after SECONDS.
stop_pid() {
  local pid
  [ -f "$1" ] || return 0
  pid="$(<"$1")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 $(($2 * 10))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "cluster: pid $pid ($1) still running after $2 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$1"
}

# Daemons run in sessions of their own, so that a Ctrl-C meant for the caller does not reach
# them; without job control the background child is not a group leader and setsid execs in
# place, so $! is the daemon's own PID.
spawn() {
  local pidfile="$1" log="$2"
  shift 2
  setsid "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

as_postgres_cmd() {
  # runuser stays as a parent and kills Patroni 2 s after SIGTERM, orphaning a postmaster in
  # mid-shutdown; setpriv execs, so the PID we keep is Patroni's.
  if [ "$(id -u)" -eq 0 ]; then
    echo setpriv --reuid=postgres --regid=postgres --init-groups
  fi
}

install_packages() {
  local missing=()
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v patroni >/dev/null || missing+=(patroni)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  pg_bindir >/dev/null || missing+=(postgresql)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v curl >/dev/null || missing+=(curl)
  command -v jq >/dev/null || missing+=(jq)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}"
  fi
  say "cluster: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

haproxy_bin() { command -v haproxy || echo /usr/sbin/haproxy; }

random_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# Secrets are made once per cluster and kept with its data.
load_secrets() {
  local file="$CDIR/secrets"
  if [ ! -f "$file" ]; then
    (umask 077 && printf 'SUPERUSER_PASSWORD=%s\nREPLICATION_PASSWORD=%s\nAPP_PASSWORD=%s\n' \
      "$(random_secret)" "$(random_secret)" "$(random_secret)" >"$file")
  fi
  source "$file"
}

# The instances reach the primary through HAProxy's port, or (CLUSTER_DB_ROUTE=hosts) with every
# node in the URL, where the driver skips the standbys (target_session_attrs=read-write).
app_database_url() {
  local hosts node
  case "$DB_ROUTE" in
    haproxy) echo "postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$PRIMARY_PORT/$DB_NAME" ;;
    hosts)
      hosts="$(for node in "${NODES[@]}"; do printf '127.0.0.1:%s,' "$(pg_port "$node")"; done)"
      echo "postgres://$APP_USER:$APP_PASSWORD@${hosts%,}/$DB_NAME?target_session_attrs=read-write"
      ;;
  esac
}

# The service's database at HAProxy's read port, or at one node (node_database_url NODE).
app_read_url() { echo "postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$READ_PORT/$DB_NAME"; }
node_database_url() { echo "postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$(pg_port "$1")/$DB_NAME"; }

write_cluster_env() {
  local urls=() spares=() i
  for i in $(seq 1 "$INSTANCES"); do urls+=("http://127.0.0.1:$(instance_port "$i")"); done
  for i in $(seq $((INSTANCES + 1)) 9); do spares+=("http://127.0.0.1:$(instance_port "$i")"); done
  # SPARE_INSTANCE_URLS: where instances CLUSTER_INSTANCES+1.. answer once `start-instance N NODE`
  # has started them (outside HAProxy).
  (umask 077 && cat >"$CDIR/cluster.env" <<EOF
CLUSTER_DIR=$CDIR
CLUSTER_URL=http://127.0.0.1:$CLUSTER_PORT
INSTANCE_URLS=${urls[*]}
SPARE_INSTANCE_URLS=${spares[*]}
CLUSTER_READS=$READS
DATABASE_URL=$(app_database_url)
DATABASE_READ_URL=$(app_read_url)
NODES=${NODES[*]}
NODE_DATABASE_URLS=$(for n in "${NODES[@]}"; do printf '%s ' "$(node_database_url "$n")"; done)
PATRONI_URLS=$(for n in "${NODES[@]}"; do printf 'http://127.0.0.1:%s ' "$(rest_port "$n")"; done)
HAPROXY_STATS_URL=http://127.0.0.1:$STATS_PORT/
EOF
  )
}

wait_for() {
  local what="$1" seconds="$2"
  shift 2
  for _ in $(seq 1 $((seconds * 4))); do
    "$@" && return 0
    sleep 0.25
  done
  die "$what did not happen within $seconds s"
}

# --- etcd ---------------------------------------------------------------------------------

etcd_healthy() { curl -fs --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

start_etcd() {
  alive "$CDIR/etcd.pid" && return 0
  mkdir -p "$CDIR/etcd"
  chmod 700 "$CDIR/etcd"
  spawn "$CDIR/etcd.pid" "$CDIR/etcd.log" etcd --name etcd1 --data-dir "$CDIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "etcd1=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-token "ordersvc-$CLUSTER_NAME"
  wait_for "etcd answering on 127.0.0.1:$ETCD_PORT" 30 etcd_healthy
  say "cluster: etcd on 127.0.0.1:$ETCD_PORT"
}

# --- Patroni and PostgreSQL ---------------------------------------------------------------

# The Patroni REST API's view of the cluster: {"members":[{"name","role","state","lag",...}]}.
cluster_json() {
  local node
  for node in "${NODES[@]}"; do
    curl -fs --max-time 1 "http://127.0.0.1:$(rest_port "$node")/cluster" && return 0
  done
  return 1
}

leader() { cluster_json | jq -er '.members[] | select(.role == "leader") | .name'; }
sync_standby() { cluster_json | jq -er '.members[] | select(.role == "sync_standby") | .name'; }

# A leader, a synchronous standby, and every node running or streaming, each within the lag
# that still lets Patroni promote it (maximum_lag_on_failover, 1 MB). Not "no lag": with reads
# on the standbys every instance commits a heartbeat four times a second, and Patroni compares
# positions taken up to loop_wait apart, so a lag of 0 on every member at once may not come.
healthy() {
  cluster_json | jq -e --argjson n "${#NODES[@]}" '
    ([.members[] | select(.state == "running" or .state == "streaming")] | length == $n)
    and ([.members[] | select(.role == "leader")] | length == 1)
    and ([.members[] | select(.role == "sync_standby")] | length >= 1)
    and all(.members[]; (.lag // 0) | type == "number" and . <= 1048576)' >/dev/null 2>&1
}

write_node_config() {
  local NODE="$1" NODE_DIR="$CDIR/$1" REST_PORT PG_PORT PG_BINDIR APPLY_DELAY=0
  REST_PORT="$(rest_port "$NODE")"
  PG_PORT="$(pg_port "$NODE")"
  PG_BINDIR="$(require_pg_bindir)"
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/apply-delay" ] && APPLY_DELAY="$(<"$NODE_DIR/apply-delay")"
  (umask 077 && render "$TEMPLATES/patroni.yml" >"$NODE_DIR/patroni.yml")
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres: "$NODE_DIR"
    runuser -u postgres -- test -x "$NODE_DIR" ||
      die "the postgres user cannot reach $NODE_DIR: make its parent folders traversable (chmod o+x)"
  fi
  # PostgreSQL refuses a data folder that others can read.
  chmod 700 "$NODE_DIR"
}

start_node() {
  local node="$1" dir="$CDIR/$1"
  alive "$dir/patroni.pid" && return 0
  write_node_config "$node"
  # shellcheck disable=SC2046 # as_postgres_cmd is a command prefix or nothing
  spawn "$dir/patroni.pid" "$dir/patroni.log" $(as_postgres_cmd) patroni "$dir/patroni.yml"
  say "cluster: started Patroni $node (PostgreSQL on 127.0.0.1:$(pg_port "$node"), REST on 127.0.0.1:$(rest_port "$node"))"
}

# stop_node NAME: Patroni stops its postmaster; the postmaster's PID is waited for as well,
# since it may outlive a Patroni that was killed.
stop_node() {
  local dir="$CDIR/$1" pid=""
  [ -f "$dir/data/postmaster.pid" ] && pid="$(head -n 1 "$dir/data/postmaster.pid")"
  stop_pid "$dir/patroni.pid" 60
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || return 0
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# delay_node NAME DELAY: NAME's own patroni.yml gets recovery_min_apply_delay, which Patroni
# writes only while the node is a standby (a primary has nothing to apply); a reload applies it
# without a restart. Returns once PostgreSQL reports the new setting.
delay_node() {
  local node="$1" delay="$2" ms role
  case "$delay" in
    0) ms=0 ;;
    *ms) ms="${delay%ms}" ;;
    *s) ms=$((${delay%s} * 1000)) ;;
    *) ms=x ;;
  esac
  [[ "$ms" =~ ^[0-9]+$ ]] || die "the delay must be 0, a number of ms or a number of s (500ms, 2s; got $delay)"
  role="$(cluster_json | jq -r --arg n "$node" '.members[] | select(.name == $n) | .role')"
  [ -n "$role" ] || die "Patroni does not list $node"
  [ "$role" != leader ] || die "$node leads: only a standby applies WAL"
  echo "$delay" >"$CDIR/$node/apply-delay"
  write_node_config "$node"
  patronictl -c "$CDIR/$node/patroni.yml" reload ordersvc "$node" --force >/dev/null
  wait_for "$node applying WAL $delay late" 30 applies_late "$node" "$ms"
  if [ "$ms" -eq 0 ]; then say "cluster: $node applies WAL as it arrives"; else say "cluster: $node applies WAL $delay late"; fi
}

applies_late() {
  PGPASSWORD="$SUPERUSER_PASSWORD" psql -h 127.0.0.1 -p "$(pg_port "$1")" -U postgres -d postgres -qtAc \
    "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'" 2>/dev/null | grep -qx "$2"
}

primary_answers() { PGPASSWORD="$SUPERUSER_PASSWORD" psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -qtAc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null | grep -q t; }

# The service's own login and database, made once through the primary.
create_app_database() {
  local sql=(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1)
  PGPASSWORD="$SUPERUSER_PASSWORD" "${sql[@]}" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') THEN
        CREATE ROLE $APP_USER LOGIN PASSWORD '$APP_PASSWORD';
      END IF; END \$\$" >/dev/null
  if [ -z "$(PGPASSWORD="$SUPERUSER_PASSWORD" "${sql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    PGPASSWORD="$SUPERUSER_PASSWORD" "${sql[@]}" -c "CREATE DATABASE $DB_NAME OWNER $APP_USER" >/dev/null
  fi
}

# --- HAProxy ------------------------------------------------------------------------------

write_haproxy_config() {
  local INSTANCE_SERVERS="" NODE_SERVERS="" i node
  for i in $(seq 1 "$INSTANCES"); do
    INSTANCE_SERVERS+="    server instance-$i 127.0.0.1:$(instance_port "$i") check"$'\n'
  done
  for node in "${NODES[@]}"; do
    NODE_SERVERS+="    server $node 127.0.0.1:$(pg_port "$node") check port $(rest_port "$node")"$'\n'
  done
  # The same nodes serve the primary and the read listener; each listener's check picks its own.
  render "$TEMPLATES/haproxy.cfg" >"$CDIR/haproxy.cfg"
}

start_haproxy() {
  alive "$CDIR/haproxy.pid" && return 0
  write_haproxy_config
  "$(haproxy_bin)" -c -q -f "$CDIR/haproxy.cfg" || die "HAProxy refused $CDIR/haproxy.cfg"
  # -db keeps it in the foreground, so the PID we keep is the one serving.
  spawn "$CDIR/haproxy.pid" "$CDIR/haproxy.log" "$(haproxy_bin)" -db -f "$CDIR/haproxy.cfg"
  sleep 0.5
  alive "$CDIR/haproxy.pid" || {
    tail -n 5 "$CDIR/haproxy.log" >&2
    die "HAProxy exited (a port in use? CLUSTER_PORT=$CLUSTER_PORT, CLUSTER_BASE_PORT=$BASE)"
  }
  say "cluster: HAProxy on 127.0.0.1:$CLUSTER_PORT (service), 127.0.0.1:$PRIMARY_PORT (primary), 127.0.0.1:$READ_PORT (standbys), 127.0.0.1:$STATS_PORT (stats)"
}

# haproxy_up PROXY SERVER: HAProxy's health checks currently pass for SERVER in PROXY (from its
# stats CSV).
haproxy_up() {
  curl -fs --max-time 1 "http://127.0.0.1:$STATS_PORT/;csv" |
    awk -F, -v p="$1" -v s="$2" '$1 == p && $2 == s && $18 == "UP" { ok = 1 } END { exit !ok }'
}

# --- service instances --------------------------------------------------------------------

ready() { curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$1$HEALTH_PATH"; }

# start_instance N [NODE]: instance N reads through HAProxy's read port (CLUSTER_READS=replicas),
# from the primary (CLUSTER_READS=primary), or from NODE alone.
start_instance() {
  local n="$1" node="${2:-}" port bin pid read_url=""
  [[ "$n" =~ ^[1-9]$ ]] || die "instances are numbered 1 to 9 (got $n)"
  port="$(instance_port "$n")"
  alive "$CDIR/instance-$n.pid" && return 0
  bin="$(bin_path order-service)"
  [ -x "$bin" ] || die "$bin is missing: run cargo build --bins --profile ${BUILD_PROFILE:-release}"
  if [ -n "$node" ]; then
    read_url="$(node_database_url "$node")"
  elif [ "$READS" = replicas ]; then
    read_url="$(app_read_url)"
  fi
  rm -f "$CDIR/instance-$n.pid" "$CDIR/instance-$n.exit"
  # A watcher shell records the instance's exit status, so that a test can tell a clean drain
  # (0) from a crash. The PID file holds the instance's own PID. An empty DATABASE_READ_URL
  # counts as unset, and wins over one in a developer's .env.
  (
    status=0
    DATABASE_URL="$(app_database_url)" DATABASE_READ_URL="$read_url" HOST=127.0.0.1 PORT="$port" \
      SHUTDOWN_GRACE="$SHUTDOWN_GRACE" DB_MAX_OPEN_CONNS="${DB_MAX_OPEN_CONNS:-8}" \
      RUST_LOG="${RUST_LOG:-info,order_service::api::observe=warn}" \
      setsid "$bin" </dev/null &
    echo $! >"$CDIR/instance-$n.pid.new"
    mv "$CDIR/instance-$n.pid.new" "$CDIR/instance-$n.pid"
    wait $! || status=$?
    echo "$status" >"$CDIR/instance-$n.exit"
  ) >>"$CDIR/instance-$n.log" 2>&1 &
  wait_for "instance $n's PID file" 10 test -f "$CDIR/instance-$n.pid"
  pid="$(<"$CDIR/instance-$n.pid")"
  for _ in $(seq 1 240); do
    ready "$port" && break
    kill -0 "$pid" 2>/dev/null || {
      tail -n 20 "$CDIR/instance-$n.log" >&2
      die "instance $n exited (log above, in $CDIR/instance-$n.log)"
    }
    sleep 0.25
  done
  ready "$port" || die "instance $n not ready on $port within 60 s (log: $CDIR/instance-$n.log)"
  say "cluster: instance $n ready on 127.0.0.1:$port (pid $pid${node:+, reading from $node})"
  # Only the first CLUSTER_INSTANCES are behind HAProxy.
  if [ "$n" -le "$INSTANCES" ]; then
    wait_for "HAProxy sending to instance $n" 10 haproxy_up instances "instance-$n"
  fi
}

stop_instance() {
  local n="$1" grace_s
  alive "$CDIR/instance-$n.pid" || { say "cluster: instance $n is not running"; return 0; }
  # The grace, the in-flight requests, then actix's own 30 s shutdown limit.
  grace_s="$(sed -E 's/^([0-9]+)s$/\1/;t;s/.*/5/' <<<"$SHUTDOWN_GRACE")"
  stop_pid "$CDIR/instance-$n.pid" $((grace_s + 35))
  wait_for "instance $n's exit status" 5 test -f "$CDIR/instance-$n.exit"
  say "cluster: instance $n exited with status $(<"$CDIR/instance-$n.exit")"
}

# --- commands -----------------------------------------------------------------------------

up() {
  local i node
  install_packages
  build_bins
  mkdir -p "$CDIR"
  load_secrets
  write_cluster_env
  start_etcd
  if [ -f "$CDIR/${NODES[0]}/data/PG_VERSION" ]; then
    # An existing cluster: all at once, since only the former leader or its synchronous
    # standby may take the lead, and either may be any node.
    for node in "${NODES[@]}"; do start_node "$node"; done
    start_haproxy
    wait_for "a writable primary on 127.0.0.1:$PRIMARY_PORT" 90 primary_answers
  else
    # A new cluster: the first node alone bootstraps it, the others then copy it.
    start_node "${NODES[0]}"
    start_haproxy
    wait_for "a writable primary on 127.0.0.1:$PRIMARY_PORT" 60 primary_answers
    for node in "${NODES[@]:1}"; do start_node "$node"; done
  fi
  create_app_database
  say "cluster: waiting for a synchronous standby (about 10 s on a new cluster)"
  wait_for "a healthy cluster (leader, synchronous standby, all nodes streaming)" 120 healthy
  for i in $(seq 1 "$INSTANCES"); do start_instance "$i"; done
  status
  say "cluster: up. Service: http://127.0.0.1:$CLUSTER_PORT  Instances' database: $(app_database_url | sed 's/:[^:@/]*@/:***@/')"
  say "cluster: the full URLs are in ${CDIR#"$ROOT"/}/cluster.env"
}

down() {
  local i node lead=""
  [ -d "$CDIR" ] || { say "cluster: nothing under ${CDIR#"$ROOT"/}"; return 0; }
  # Together, so that their drains overlap.
  for i in $(seq 1 9); do
    if alive "$CDIR/instance-$i.pid"; then stop_instance "$i" & fi
  done
  wait
  stop_pid "$CDIR/haproxy.pid" 10
  # Standbys first: a leader stopped first would hand its role to a standby about to stop.
  lead="$(leader 2>/dev/null || true)"
  for node in "${NODES[@]}"; do
    if [ "$node" != "$lead" ]; then stop_node "$node" & fi
  done
  wait
  [ -n "$lead" ] && stop_node "$lead"
  stop_pid "$CDIR/etcd.pid" 10
  say "cluster: stopped"
}

status() {
  local i port state haproxy
  [ -f "$CDIR/${NODES[0]}/patroni.yml" ] || die "no cluster under ${CDIR#"$ROOT"/}: run $0 up"
  patronictl -c "$CDIR/${NODES[0]}/patroni.yml" list || say "cluster: Patroni does not answer"
  for i in $(seq 1 "$INSTANCES"); do
    port="$(instance_port "$i")"
    if ! alive "$CDIR/instance-$i.pid"; then
      state="not running"
    else
      state="pid $(<"$CDIR/instance-$i.pid"), $HEALTH_PATH $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port$HEALTH_PATH")"
    fi
    haproxy_up instances "instance-$i" && haproxy="in HAProxy" || haproxy="not in HAProxy"
    printf 'instance %s  127.0.0.1:%s  %s, %s\n' "$i" "$port" "$state" "$haproxy"
  done
}

# wait_healthy SECONDS: as wait_for, but a cluster that stays unhealthy is shown (Patroni's view and
# the end of each node's log) before giving up, so that a failed run in CI says why.
wait_healthy() {
  for _ in $(seq 1 $(($1 * 4))); do
    healthy && return 0
    sleep 0.25
  done
  local node
  say "cluster: not healthy after $1 s; Patroni's view:"
  cluster_json | jq -c '.members[] | {name, role, state, lag, timeline}' >&2 || say "(no answer)"
  for node in "${NODES[@]}"; do
    say "--- the end of $node/patroni.log"
    tail -n 15 "$CDIR/$node/patroni.log" >&2 || true
  done
  die "a healthy cluster did not happen within $1 s"
}

switchover() {
  local from to
  from="$(leader)" || die "no leader"
  to="$(sync_standby)" || die "no synchronous standby to switch over to"
  patronictl -c "$CDIR/${NODES[0]}/patroni.yml" switchover --leader "$from" --candidate "$to" --force >/dev/null
  say "cluster: switched over from $from to $to"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  wipe)
    down
    rm -rf "$CDIR"
    say "cluster: deleted ${CDIR#"$ROOT"/}"
    ;;
  start-instance) load_secrets && start_instance "${2:?instance number}" "${3:-}" ;;
  stop-instance) stop_instance "${2:?instance number}" ;;
  start-node) load_secrets && start_node "${2:?node name}" ;;
  stop-node) node_index "${2:?node name}" >/dev/null && stop_node "$2" && say "cluster: stopped $2" ;;
  delay-node) load_secrets && delay_node "${2:?node name}" "${3:?delay, e.g. 500ms}" ;;
  switchover) switchover ;;
  wait-healthy) wait_healthy "${2:-60}" ;;
  *) die "usage: $0 up|down|status|wipe|start-instance N [NODE]|stop-instance N|start-node NAME|stop-node NAME|delay-node NAME DELAY|switchover|wait-healthy [SECONDS]" ;;
esac
