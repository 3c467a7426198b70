#!/usr/bin/env bash
# Sustained load: each mode for DURATION after a WARMUP, CONCURRENCY requests in flight, on the
# server that answers on BASE_URL or on one started for the run (see with-server.sh). Prints
# each run's figures, then the throughputs side by side.
#
#   DURATION=10s CONCURRENCY=100 WARMUP=2s MODES="create get list" scripts/bench-stress.sh [stress flags]
#
# Figures depend on the machine and on what else runs on it: compare runs on one machine only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DURATION="${DURATION:-10s}" CONCURRENCY="${CONCURRENCY:-100}" WARMUP="${WARMUP:-2s}"
export MODES="${MODES:-create get list}"
# One server for all modes: the loop runs inside with-server.sh.
bench() {
  local mode results=()
  for mode in $MODES; do
    "$(bin_path stress)" --mode "$mode" --duration "$DURATION" --warmup "$WARMUP" \
      --concurrency "$CONCURRENCY" "$@" | tee "$DATA/bench-stress-$mode.out"
    results+=("$(grep '^RESULT ' "$DATA/bench-stress-$mode.out")")
    echo
  done
  echo "bench-stress: $DURATION per mode, $CONCURRENCY in flight"
  printf '%s\n' "${results[@]}"
}

if [ "${1:-}" = "--inside-server" ]; then
  shift
  bench "$@"
else
  build_bins
  mkdir -p "$DATA"
  exec "$ROOT/scripts/with-server.sh" "$0" --inside-server "$@"
fi
