#!/usr/bin/env bash
# `make run`: build, make sure the database is there, serve.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
cargo build --release --locked --bin order-service
scripts/db.sh up
exec target/release/order-service
