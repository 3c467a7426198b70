#!/usr/bin/env bash
# `make test`: unit and integration tests against the private test cluster, which this
# script starts if needed and stops again if it started it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEST_PORT="${TEST_PG_PORT:-25432}"
started=0
if ! is_running "$DATA/postgres-test"; then
  "$ROOT/scripts/db.sh" test-up
  started=1
fi
# An `if`, not `&&`: a false test as the trap's last command would become the exit status.
stop() { if [ "$started" -eq 1 ]; then "$ROOT/scripts/db.sh" test-down; fi; }
trap stop EXIT

export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$TEST_PORT/postgres"
cd "$ROOT"
# --workspace: the stress client (crates/stress) has unit tests too.
cargo test --workspace --all-targets --locked "$@"
