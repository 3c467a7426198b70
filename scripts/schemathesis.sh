#!/usr/bin/env bash
# Fuzzes a running server against its own OpenAPI document with Schemathesis.
#
#   BASE_URL=http://127.0.0.1:8080 scripts/schemathesis.sh
#
# BASE_URL     server to test (default http://127.0.0.1:$PORT, PORT defaulting to 8080)
# API_KEY      sent as `Authorization: Bearer $API_KEY` when the server has API_KEYS set
# MAX_EXAMPLES test cases per operation and phase (default 100; the run stays within minutes)
#
# Creates a virtualenv in .venv-schemathesis on first use. Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

load_env
BASE_URL="$(default_base_url)"
MAX_EXAMPLES="${MAX_EXAMPLES:-100}"
SCHEMATHESIS_VERSION="4.32.5"
VENV="$ROOT/.venv-schemathesis"

if [[ ! -x "$VENV/bin/schemathesis" ]] ||
    ! "$VENV/bin/schemathesis" --version | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi

args=(
    --config-file "$ROOT/scripts/schemathesis.toml"
    run "$BASE_URL/api/v1/openapi.json"
    --max-examples "$MAX_EXAMPLES"
    --seed "${SEED:-1}"
    --request-timeout 10
    --wait-for-schema 30
)
if [[ -n "${API_KEY:-}" ]]; then
    args+=(--header "Authorization: Bearer $API_KEY")
fi

exec "$VENV/bin/schemathesis" "${args[@]}"
