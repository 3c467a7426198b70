# Shared helpers for the scripts in this folder. Source it; it defines functions only.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/.data"

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Reads .env like the server does: variables already set in the environment win.
load_env() {
  local line key
  [ -f "$ROOT/.env" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    [[ "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key="${BASH_REMATCH[1]}"
    [ -n "${!key+x}" ] && continue
    export "$key=$(sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/" <<<"${BASH_REMATCH[2]}")"
  done <"$ROOT/.env"
}

# The PostgreSQL server binaries (initdb, pg_ctl), newest version first.
pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir="$(pg_config --bindir 2>/dev/null)"
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

require_pg_bindir() {
  pg_bindir || die "PostgreSQL server binaries not found. Install them with: sudo apt-get install postgresql"
}

# PostgreSQL refuses to run as root: run its programs as the postgres user then.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Creates a cluster folder the server's user owns and can reach.
prepare_cluster_dir() {
  local dir="$1"
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user (sudo apt-get install postgresql creates it)"
    chown postgres: "$DATA" "$dir"
    runuser -u postgres -- test -x "$dir" ||
      die "the postgres user cannot reach $dir: make its parent folders traversable (chmod o+x) or run as a normal user"
  fi
}

# is_running DATADIR: the cluster in DATADIR has a live postmaster.
is_running() {
  local bindir
  bindir="$(pg_bindir)" || return 1
  [ -f "$1/PG_VERSION" ] && as_pg "$bindir/pg_ctl" -D "$1" status >/dev/null 2>&1
}

# percent_encode TEXT: every byte but ASCII letters and digits as %XX, as the server encodes
# credentials in the database URL it builds.
percent_encode() {
  local LC_ALL=C text="$1" c i out=""
  for ((i = 0; i < ${#text}; i++)); do
    c="${text:i:1}"
    case "$c" in
      [a-zA-Z0-9]) out+="$c" ;;
      *) printf -v c '%%%02X' "'$c" && out+="$c" ;;
    esac
  done
  printf '%s' "$out"
}

# The database URL the server connects to: DATABASE_URL, else the one src/config.rs builds
# from the POSTGRES_* variables. Call load_env first.
server_database_url() {
  if [ -n "${DATABASE_URL:-}" ]; then
    printf '%s' "$DATABASE_URL"
    return
  fi
  printf 'postgres://%s:%s@%s:%s/%s?sslmode=%s' \
    "$(percent_encode "${POSTGRES_USER:-user}")" "$(percent_encode "${POSTGRES_PASSWORD:-password}")" \
    "${POSTGRES_HOST:-localhost}" "${POSTGRES_PORT:-5432}" \
    "$(percent_encode "${POSTGRES_DBNAME:-orderdb}")" "${POSTGRES_SSLMODE:-disable}"
}

# The server the scripts talk to: BASE_URL, else the port a local server listens on (PORT,
# default 8080). Call load_env first, so that a PORT in .env counts.
default_base_url() {
  printf '%s' "${BASE_URL:-http://127.0.0.1:${PORT:-8080}}"
}

# Where cargo builds: CARGO_TARGET_DIR, CARGO_BUILD_TARGET_DIR or `build.target-dir` in a cargo
# config, else target/ in the workspace. Asked of cargo, which knows every one of those.
target_dir() {
  (cd "$ROOT" && cargo metadata --format-version 1 --no-deps) |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# The server and stress binaries that with-server.sh and the stress scripts run, built with the
# cargo profile BUILD_PROFILE: release unless set (CI sets dev to reuse what `make test` built).
# The stress client is a workspace member of its own (crates/stress), hence --workspace.
build_bins() {
  (cd "$ROOT" && cargo build --locked --workspace --bins --profile "${BUILD_PROFILE:-release}")
}

# bin_path NAME: where build_bins put binary NAME.
bin_path() {
  local dir="${BUILD_PROFILE:-release}" target
  [ "$dir" = dev ] && dir=debug
  target="$(target_dir)"
  [ -n "$target" ] || die "cargo metadata did not name a target directory"
  printf '%s' "$target/$dir/$1"
}

# wait_until_ready BASE_URL PID LOG SECONDS [PATH]: waits until BASE_URL/health/ready (or PATH)
# answers 200, that is until the server has migrated and its database answers. Dies, with the
# end of LOG, when process PID exits first or SECONDS pass.
wait_until_ready() {
  local url="$1${5:-/health/ready}" pid="$2" log="$3" within="$4" polls=0
  until curl -fs -o /dev/null --max-time 2 "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "the server exited before $url answered 200 (log above, in $log)"
    fi
    if [ "$polls" -ge $((within * 2)) ]; then
      tail -n 20 "$log" >&2
      die "$url did not answer 200 within $within s (log above, in $log)"
    fi
    sleep 0.5
    polls=$((polls + 1))
  done
}

# stop_child PID: SIGTERM to a child of this shell, and wait for it; nothing when PID is empty
# or already gone.
stop_child() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null && wait "$1" 2>/dev/null || true
}

# bench_cluster_up PORT: starts the benchmark cluster (.data/postgres-bench) on PORT unless it
# runs already; prints 1 when this call started it (so the caller stops it), else 0.
bench_cluster_up() {
  if is_running "$DATA/postgres-bench"; then
    echo 0
  else
    BENCH_PG_PORT="$1" "$ROOT/scripts/db.sh" bench-up >&2
    echo 1
  fi
}

# field NAME LINE: the value of NAME=value in a stress RESULT line.
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }

# own_ticks PID: the CPU ticks (user + system, all threads) process PID has used.
own_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# pg_ticks POSTMASTER_PID: every CPU tick a PostgreSQL server has spent: the postmaster's own,
# its ended children's (counted when it reaps them) and its live children's. A backend that
# ends between two readings moves from the last sum to the second, so differences hold across
# connection churn.
pg_ticks() {
  local total child
  total="$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat")"
  for child in $(pgrep -P "$1"); do
    total=$((total + $(own_ticks "$child" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# micros_per TICKS COUNT: TICKS of CPU per item, in microseconds.
micros_per() {
  awk -v t="$1" -v n="$2" -v ticks="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / ticks / n * 1e6 }'
}

# The seed's extreme stress test as its Go client sends it: 10,000 orders, 500 in flight, at most
# 2 idle connections (Go's default transport), gzip asked for on every request.
SEED_EXTREME_FLAGS=(--mode create --orders 10000 --concurrency 500 --max-idle 2
  --accept-encoding gzip --timeout 60s)
