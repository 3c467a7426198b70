# The service's image: `docker build -t ordersvc .` (docs/CONTAINER.md says how to run it).
#
# Three stages: the dependencies compiled in a layer of their own (cargo-chef), so that a change
# of our code rebuilds only our crate; the service built on top; a runtime stage holding the
# binary, the C libraries it links (glibc, libgcc, OpenSSL) and CA certificates, and nothing
# else: no shell, no package manager. Distroless `cc` is that and no more (23 MB);
# debian:bookworm-slim would add a shell and apt that the service never runs, and still need
# OpenSSL and CA certificates installed.
#
# The base images are arguments so that a machine without a registry can use its own: our CI
# (scripts/container.sh) builds equivalents from Debian's packages, and replaces the `build`
# stage with the binary it has already compiled (--build-context build=DIR). Both bases must be
# Debian 12 (bookworm), so that the binary finds the glibc and OpenSSL it was linked against.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM ${RUST_IMAGE} AS chef
# OpenSSL's headers for native-tls; the Rust image has the C compiler mimalloc needs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

# The recipe: every manifest of the workspace with its targets, and Cargo.lock. It changes
# only when dependencies do, which keeps the next stage's layer cached across code changes.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --package order-service --bin order-service
COPY . .
RUN cargo build --release --locked --package order-service --bin order-service \
    && install -m 0755 target/release/order-service /usr/local/bin/order-service

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=unspecified
ARG REVISION=unspecified
# Where the source lives; the project has no public address yet, so it is set at build time.
ARG SOURCE=
LABEL org.opencontainers.image.title="ordersvc" \
      org.opencontainers.image.description="Order management service: REST API on actix-web and PostgreSQL" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /usr/local/bin/order-service /usr/local/bin/order-service
# Distroless's `nonroot`, by number so that it holds on any base: Kubernetes' runAsNonRoot can
# check a numeric user without reading /etc/passwd.
USER 65532:65532
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
# The server is PID 1 and handles SIGTERM itself: /health/ready turns 503, it serves for
# SHUTDOWN_GRACE (5 s) more, then finishes in-flight requests and exits 0, inside the 10 s
# that `docker stop` waits before SIGKILL. SIGINT does the same; nothing is left to reap, since
# the service starts no child processes.
STOPSIGNAL SIGTERM
# The binary asks its own /health/ready: healthy means it takes traffic (the database answers
# and it is not draining). Kept only in Docker's image format (`podman build --format docker`).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/order-service", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/order-service"]
