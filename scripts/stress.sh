#!/usr/bin/env bash
# Stress test: ORDERS orders with CONCURRENCY requests in flight, each read back afterwards, on
# the server that answers on BASE_URL or on one started for the run (see with-server.sh).
#
#   scripts/stress.sh ORDERS CONCURRENCY [stress flags: `stress --help`, crates/stress]
#
# BUILD_PROFILE: cargo profile of the binaries (default release).
#
# Exits non-zero unless every order succeeds and verification passes (unless --min-success).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$#" -ge 2 ] || die "usage: $0 ORDERS CONCURRENCY [stress flags]"
orders="$1"
concurrency="$2"
shift 2
build_bins
exec "$ROOT/scripts/with-server.sh" "$(bin_path stress)" --orders "$orders" --concurrency "$concurrency" "$@"
