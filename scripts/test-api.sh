#!/usr/bin/env bash
# `make test-api`: walks through every endpoint and error case of a running server with curl,
# failing on the first unexpected answer. BASE_URL defaults to http://127.0.0.1:$PORT (PORT from
# the environment or .env, else 8080); API_KEY is sent as a bearer token when set.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

load_env
BASE="$(default_base_url)"
AUTH=()
[ -n "${API_KEY:-}" ] && AUTH=(-H "Authorization: Bearer $API_KEY")
checks=0
BODY=""
HEADERS=""

# call METHOD PATH [curl args...]: sets STATUS, BODY, HEADERS
call() {
  local method="$1" path="$2" out
  shift 2
  out="$(mktemp)"
  HEADERS="$(curl -sS -D - -o "$out" -X "$method" "${AUTH[@]}" "$@" "$BASE$path" | tr -d '\r')"
  STATUS="$(head -n1 <<<"$HEADERS" | awk '{print $2}')"
  BODY="$(cat "$out")"
  rm -f "$out"
}

fail() {
  printf 'test-api: FAILED: %s\n  status: %s\n  body: %s\n' "$1" "$STATUS" "$BODY" >&2
  exit 1
}

# expect STATUS DESCRIPTION [jq filter that must print true]
expect() {
  local want="$1" what="$2" filter="${3:-}"
  [ "$STATUS" = "$want" ] || fail "$what: expected HTTP $want"
  if [ "$want" -ge 400 ]; then
    jq -e '(.error | type == "string") and (.code | type == "string") and (.request_id | type == "string")' <<<"$BODY" >/dev/null ||
      fail "$what: error body must be JSON with error, code and request_id"
  fi
  if [ -n "$filter" ]; then
    jq -e "$filter" <<<"$BODY" >/dev/null || fail "$what: body does not satisfy $filter"
  fi
  checks=$((checks + 1))
  printf 'ok %2d  %s %s\n' "$checks" "$want" "$what"
}

json() { printf '%s' "-HContent-Type: application/json"; }

SEED='{"customer_name":"John Doe","customer_email":"john@example.com","items":[{"product_name":"Laptop","quantity":1,"unit_price":999.99}]}'

call GET /health
expect 200 "health" '.status == "healthy" and .database == "up"'

call POST /api/v1/orders "$(json)" -d "$SEED"
expect 201 "create the Go service README's example order" '.status == "pending" and .total_amount == 999.99 and (.items | length) == 1'
ID="$(jq -r .id <<<"$BODY")"
grep -qi "^location: /api/v1/orders/$ID$" <<<"$HEADERS" || fail "Location header for order $ID"

call GET "/api/v1/orders/$ID"
expect 200 "read it back" ".id == $ID and .items[0].product_name == \"Laptop\""
grep -qi '^x-request-id: ' <<<"$HEADERS" || fail "X-Request-Id on every answer"

call GET "/api/v1/orders/$ID" -H "X-Request-Id: test-api-trace-1"
expect 200 "a client's request id is echoed"
grep -qi '^x-request-id: test-api-trace-1$' <<<"$HEADERS" || fail "X-Request-Id echoed"
call GET /api/v1/orders/999999999999 -H "X-Request-Id: test-api-trace-2"
expect 404 "the error body names the request id" '.request_id == "test-api-trace-2"'

call GET "/api/v1/orders?limit=10"
expect 200 "list the first page" '(.orders | type == "array") and has("next_cursor")'
NEXT="$(jq -r '.next_cursor // empty' <<<"$BODY")"
if [ -n "$NEXT" ]; then
  call GET "/api/v1/orders?limit=10&cursor=$(jq -rn --arg c "$NEXT" '$c|@uri')"
  expect 200 "follow next_cursor" '.orders | type == "array"'
fi

call GET "/api/v1/orders?limit=10&cursor=2025-06-14T17:47:05Z_1"
expect 200 "the legacy <time>_<id> cursor" '.orders | type == "array"'

call GET "/api/v1/orders?limit=100&status=pending&customer_email=JOHN@example.com"
expect 200 "filter by status and e-mail, any case" "(.orders | map(.id) | index($ID)) != null and all(.orders[]; .status == \"pending\" and (.customer_email | ascii_downcase) == \"john@example.com\")"
call GET "/api/v1/orders?limit=1&status=pending,processing&created_after=2020-01-01T00:00:00Z&created_before=2100-01-01T00:00:00Z"
expect 200 "several statuses and a time range" '.orders | length == 1'
FILTERED="$(jq -r '.next_cursor // empty' <<<"$BODY")"
if [ -n "$FILTERED" ]; then
  call GET "/api/v1/orders?limit=1&status=completed&cursor=$FILTERED"
  expect 400 "a cursor with other filters than its page's" '.code == "invalid_cursor"'
fi
call GET "/api/v1/orders?status=shipped"
expect 400 "unknown status filter" '.code == "validation_failed" and .details[0].field == "status"'

call PUT "/api/v1/orders/$ID/status" "$(json)" -d '{"status":"processing"}'
expect 200 "pending -> processing" '.status == "processing"'
call PUT "/api/v1/orders/$ID/status" "$(json)" -d '{"status":"processing"}'
expect 200 "processing again is a no-op" '.status == "processing"'
call PUT "/api/v1/orders/$ID/status" "$(json)" -d '{"status":"completed"}'
expect 200 "processing -> completed" '.status == "completed"'
call PUT "/api/v1/orders/$ID/status" "$(json)" -d '{"status":"pending"}'
expect 409 "completed is final" '.code == "invalid_transition" and .current_status == "completed"'
call PUT "/api/v1/orders/$ID/status" "$(json)" -d '{"status":"shipped"}'
expect 400 "unknown status" '.code == "validation_failed"'
call GET "/api/v1/orders/$ID/history"
expect 200 "the status history, oldest first" "[.history[] | .to_status] == [\"pending\", \"processing\", \"completed\"] and .history[0].from_status == null"
call GET /api/v1/orders/999999999999/history
expect 404 "history of an absent order" '.code == "order_not_found"'

call GET /api/v1/orders/999999999999
expect 404 "absent order" '.code == "order_not_found"'
call GET /api/v1/orders/abc
expect 400 "id that is not a number" '.code == "invalid_id"'
call GET "/api/v1/orders?limit=0"
expect 400 "limit 0"
call GET "/api/v1/orders?limit=101"
expect 400 "limit 101"
call GET "/api/v1/orders?cursor=garbage"
expect 400 "malformed cursor" '.code == "invalid_cursor"'

call POST /api/v1/orders "$(json)" -d '{"customer_name":"","customer_email":"nope","items":[{"product_name":"x","quantity":0,"unit_price":-1}]}'
expect 400 "every invalid field at once" '.code == "validation_failed" and (.details | length) >= 4'
call POST /api/v1/orders "$(json)" -d '{"customer_name": "x",'
expect 400 "malformed JSON" '.code == "invalid_json"'
call POST /api/v1/orders -H "Content-Type: text/plain" -d "$SEED"
expect 415 "wrong Content-Type" '.code == "unsupported_media_type"'

KEY="test-api-$(date +%s%N)"
call POST /api/v1/orders "$(json)" -H "Idempotency-Key: $KEY" -d "$SEED"
expect 201 "create with an Idempotency-Key"
FIRST="$(jq -r .id <<<"$BODY")"
call POST /api/v1/orders "$(json)" -H "Idempotency-Key: $KEY" -d "$SEED"
expect 201 "the same key again replays the order" ".id == $FIRST"
grep -qi '^idempotent-replayed: true$' <<<"$HEADERS" || fail "Idempotent-Replayed header"

call GET /metrics
[ "$STATUS" = 200 ] && grep -q '^ordersvc_orders_created_total ' <<<"$BODY" &&
  grep -q '^ordersvc_http_requests_total{method="GET",route="/api/v1/orders/{id}",status="200"} ' <<<"$BODY" ||
  fail "metrics in Prometheus text format"
checks=$((checks + 1))
printf 'ok %2d  %s %s\n' "$checks" 200 "metrics"

call GET /nope
expect 404 "unknown route"
call DELETE /api/v1/orders
expect 405 "wrong method"

echo "test-api: all $checks checks passed"
