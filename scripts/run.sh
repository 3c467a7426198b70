#!/usr/bin/env bash
# `make run`: build, make sure the database is there, serve.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
# Always a release build, whatever BUILD_PROFILE the test scripts may have been given.
BUILD_PROFILE=release
cargo build --locked --profile "$BUILD_PROFILE" --bin order-service
scripts/db.sh up
exec "$(bin_path order-service)"
