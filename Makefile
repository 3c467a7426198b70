# ordersvc: `make run` to serve, `make test` to test. `make help` lists everything.
.DEFAULT_GOAL := help
.PHONY: help build run test test-chaos test-api test-contract bench bench-micro db-up db-down db-reset test-db-up test-db-down fmt lint clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

build: ## build the release binaries
	cargo build --release --locked

run: ## build, start PostgreSQL if needed, create the database, serve on PORT (default 8080)
	scripts/run.sh

test: ## all unit and integration tests (starts and stops a private PostgreSQL on port 55432)
	scripts/test.sh

test-chaos: ## only the chaos test: database crash and SIGTERM under load (also part of make test)
	cargo test --locked --test chaos

test-api: ## curl walk-through of every endpoint against a running server (BASE_URL, default :8080)
	scripts/test-api.sh

test-contract: ## fuzz a running server against its OpenAPI document with schemathesis (BASE_URL)
	BASE_URL=$${BASE_URL:-http://127.0.0.1:8080} scripts/schemathesis.sh

bench: ## headline benchmark: pgbench ceiling vs our API on one durable PostgreSQL (DURATION, CLIENTS)
	scripts/bench.sh

bench-micro: ## criterion benches: the domain, and the database path (needs `make db-up`)
	cargo bench --locked

db-up: ## make sure the configured PostgreSQL answers (starting one if needed) and the database exists
	scripts/db.sh up

db-down: ## stop the PostgreSQL that db-up started
	scripts/db.sh down

db-reset: ## wipe and recreate the private development cluster
	scripts/db.sh reset

test-bench: ## headline benchmark: pgbench ceiling vs our API on one durable PostgreSQL (DURATION, CLIENTS)
	scripts/bench.sh

bench-micro: ## criterion benches: the domain, and the database path (needs `make db-up`)
	cargo bench --locked

db-up: ## start the private test cluster
	scripts/db.sh test-up

test-db-down: ## stop the private test cluster
	scripts/db.sh test-down

fmt: ## format the code
	cargo fmt --all

lint: ## clippy with warnings as errors, as CI runs it
	cargo clippy --all-targets --locked -- -D warnings

clean: ## remove build artifacts (keeps .data)
	cargo clean
