# ordersvc: `make run` to serve, `make test` to test. `make help` lists everything.
.DEFAULT_GOAL := help
.PHONY: help build run test test-chaos test-api test-contract test-stress test-stress-extreme test-all-stress bench-stress bench bench-ab bench-micro db-up db-down db-reset test-db-up test-db-down test-container cluster-up cluster-down cluster-status test-cluster fmt lint clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

build: ## build the release binaries (the service and the stress client)
	cargo build --release --locked --workspace

run: ## build, start PostgreSQL if needed, create the database, serve on PORT (default 8080)
	scripts/run.sh

test: ## all unit and integration tests (starts and stops a private PostgreSQL on port 25432)
	scripts/test.sh

test-chaos: ## only the chaos test: database crash and SIGTERM under load (also part of make test)
	cargo test --locked --test chaos

test-api: ## curl walk-through of every endpoint against a running server (BASE_URL, default :8080)
	scripts/test-api.sh

test-contract: ## fuzz the server on BASE_URL (started if none answers) against its OpenAPI document with schemathesis
	scripts/with-server.sh scripts/schemathesis.sh

test-stress: ## stress test: 1,000 orders, 100 in flight, all read back and counted (server started if none answers)
	scripts/stress.sh 1000 100

test-stress-extreme: ## EXTREME stress test: 10,000 orders, 500 in flight, as the Go service's own test client sends them (at most 2 idle connections, gzip asked for), all read back and counted
	scripts/stress.sh 10000 500 --timeout 60s --max-idle 2 --accept-encoding gzip

test-all-stress: test-stress test-stress-extreme ## both stress tests

bench-stress: ## sustained load per mode (create, get, list) for DURATION (10s), CONCURRENCY (100) in flight
	scripts/bench-stress.sh

bench: ## headline benchmark: pgbench ceiling vs our API on one durable PostgreSQL (DURATION, CLIENTS)
	scripts/bench.sh

bench-ab: ## throughput and CPU per operation (the extreme stress test as Go sends it, create, get, list) of git revision A against B (default HEAD), alternating: make bench-ab A=fd18c28
	scripts/bench-ab.sh "$(A)" "$(or $(B),HEAD)"

bench-micro: ## criterion benches: the domain, and the database path (needs `make db-up`)
	cargo bench --locked

db-up: ## make sure the configured PostgreSQL answers (starting one if needed) and the database exists
	scripts/db.sh up

db-down: ## stop the PostgreSQL that db-up started
	scripts/db.sh down

db-reset: ## wipe and recreate the private development cluster
	scripts/db.sh reset

test-db-up: ## start the private test cluster
	scripts/db.sh test-up

test-db-down: ## stop the private test cluster
	scripts/db.sh test-down

# Ports of its own (CONTAINER_PORT 27080, CONTAINER_PG_PORT 27432), below the kernel's
# ephemeral range (32768–60999), where an outgoing connection can hold a port; BUILD_PROFILE picks the
# binary that goes into the image (release unless set; CI's dev).
test-container: ## the Dockerfile's image and docker-compose.yml's stack with podman: stress smoke, API walk-through, non-root uid, stop under load (installs podman; leaves nothing behind)
	scripts/container.sh test

cluster-up: ## etcd, three PostgreSQL nodes under Patroni, CLUSTER_INSTANCES (2) instances, HAProxy on CLUSTER_PORT (8080)
	scripts/cluster.sh up

cluster-down: ## stop everything cluster-up started (data stays in .data/cluster)
	scripts/cluster.sh down

cluster-status: ## Patroni's view (leader, sync standby, lag) and each instance's readiness
	scripts/cluster.sh status

# A cluster of its own on ports of its own (26000–26039 and 26080, below the ephemeral range),
# created afresh and stopped afterwards (its logs stay in .data/cluster/test). API_KEYS is
# emptied so that keys in a developer's .env do not apply.
test-cluster: ## rolling restart, switchover and loss of the database host under load, then reads on the standbys (read-your-writes under replication delay, monotonic pages, a standby stopped, a switchover), on a fresh cluster
	@export CLUSTER_NAME=test CLUSTER_PORT=$${TEST_CLUSTER_PORT:-26080} CLUSTER_BASE_PORT=$${TEST_CLUSTER_BASE_PORT:-26000} API_KEYS=; \
	trap 'scripts/cluster.sh down' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	scripts/cluster.sh wipe && scripts/cluster.sh up && cargo test --workspace --locked --test cluster

fmt: ## format the code
	cargo fmt --all

lint: ## clippy with warnings as errors, as CI runs it
	cargo clippy --all-targets --workspace --locked -- -D warnings

clean: ## remove build artifacts (keeps .data)
	cargo clean
