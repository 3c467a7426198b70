#!/usr/bin/env bash
# The service's container image and compose stack, built and run with podman on a machine that
# has no Docker engine and reaches no image registry (ours and CI's). See docs/CONTAINER.md.
#
#   scripts/container.sh test        `make test-container`: the round below; leaves nothing behind
#   scripts/container.sh full-build  the Dockerfile's whole multi-stage build, as users run it,
#                                    with this machine's Rust toolchain; prints its time and size
#
# test: installs podman when missing, builds base images from Debian's packages, packages the
# binary of BUILD_PROFILE (default release; CI passes dev, which `make test` has built) in the
# Dockerfile's runtime stage, starts docker-compose.yml's stack with podman-compose, waits for
# health, runs the stress smoke and the API walk-through against it, checks the user the
# service runs as, stops it under load (no failed request, exit 0) and with SIGINT (exit 0),
# then removes every container, image, volume and network it made.
#
# CONTAINER_PORT     host port of the service (default 27080)
# CONTAINER_PG_PORT  host port of its PostgreSQL, on 127.0.0.1, for the stress count check (27432)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Everything this script makes is named under this prefix, and the compose project too.
NAME=ordersvc-ct
IMAGES="localhost/$NAME"
SERVICE_IMAGE="$IMAGES/order-service:test"
RUNTIME_BASE="$IMAGES/runtime-base:bookworm"
POSTGRES_BASE="$IMAGES/postgres:15"
BUILDER_BASE="$IMAGES/rust-builder:bookworm"
FULL_IMAGE="$IMAGES/order-service:full"
SUITE=bookworm
# The Debian mirrors this machine's apt uses, so that the bases get the packages apt would
# install here; Debian's own mirror where that file is not.
SOURCES=/etc/apt/sources.list.d/debian.sources
[ -f "$SOURCES" ] || SOURCES=http://deb.debian.org/debian
DROP_IN=/etc/containers/containers.conf.d/50-ordersvc.conf
WORK="$DATA/container"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian's podman 4.3 and its compose, and the settings without which it fails on these VMs:
# crun refuses their cgroup setup ("cgroups in hybrid mode not supported"), podman's default
# file limits exceed the VM's hard limit (setrlimit: Operation not permitted), there is no
# systemd for cgroups or the event log. A drop-in, because settings given only through
# CONTAINERS_CONF do not reach podman's cleanup process.
setup_podman() {
  local missing=() tool
  for tool in podman runc netavark aardvark-dns mmdebstrap podman-compose; do
    command -v "$tool" >/dev/null || [ -x "/usr/lib/podman/$tool" ] || missing+=("$tool")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "container: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Without recommends, podman takes runc for its runtime rather than crun.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      podman runc netavark aardvark-dns mmdebstrap podman-compose >/dev/null
  fi
  if [ ! -f "$DROP_IN" ]; then
    say "container: writing $DROP_IN"
    as_root mkdir -p "$(dirname "$DROP_IN")"
    as_root tee "$DROP_IN" >/dev/null <<EOF
# Written by ordersvc's scripts/container.sh: what podman needs on this VM (see that script).
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  fi
  podman info >/dev/null || die "podman does not work here (see podman info)"
}

# debootstrap_import IMAGE VARIANT PACKAGES [mmdebstrap options] [-- podman import --change ...]:
# a root file system of PACKAGES (and what they depend on) from Debian's packages, imported as
# IMAGE. Docs, manuals and translations are left out: nothing in a container reads them.
debootstrap_import() {
  local image="$1" variant="$2" packages="$3" opts=() changes=() change tar
  shift 3
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do opts+=("$1") && shift; done
  [ "$#" -gt 0 ] && shift
  for change in "$@"; do changes+=(--change "$change"); done
  tar="$WORK/$(basename "${image%%:*}").tar"
  say "container: building $image from Debian's packages"
  mmdebstrap --quiet --variant="$variant" --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' "${opts[@]}" "$SUITE" "$tar" "$SOURCES"
  podman import --quiet "${changes[@]}" "$tar" "$image" >/dev/null
  rm -f "$tar"
}

# Stand-ins for the Dockerfile's and the compose file's public images, which cannot be pulled.
# The runtime and PostgreSQL images are extracted from their packages rather than installed: no
# package's scripts run, so neither needs a shell or apt for them. Their hooks
# (scripts/container/*.hook) write what those scripts would have: users, CA bundle.
build_runtime_base() {
  # Like distroless cc (Debian 12): glibc, libgcc, OpenSSL, CA certificates, time zones, the
  # nonroot user, and no shell, so that a runtime stage which needed one would fail here too.
  debootstrap_import "$RUNTIME_BASE" extract \
    base-files,netbase,tzdata,libc6,libgcc-s1,libssl3,ca-certificates \
    --extract-hook="$ROOT/scripts/container/runtime-base.hook"
}

build_postgres_base() {
  # PostgreSQL 15 as the official postgres image runs it for the compose file: its variables,
  # the volume at /var/lib/postgresql/data, user postgres, pg_isready on PATH, SIGINT to stop.
  # LLVM (only JIT uses it), Perl (only the pg_wrapper scripts do) and locale sources are left
  # out: with them the image was 370 MB.
  debootstrap_import "$POSTGRES_BASE" extract dash,coreutils,postgresql-15 \
    --extract-hook="$ROOT/scripts/container/postgres.hook" \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libz3*' \
    --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/bitcode/*' \
    --dpkgopt='path-exclude=/usr/share/perl*' --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/perl*' \
    --dpkgopt='path-exclude=/usr/share/i18n/*' \
    -- 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin' \
    'ENV PGDATA=/var/lib/postgresql/data' 'USER postgres' 'STOPSIGNAL SIGINT' \
    'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]'
}

# In place of the Rust image: Debian with apt, a C compiler and OpenSSL's headers; Rust itself
# is this machine's toolchain, mounted read-only at /opt/rust during the build (Debian's rustc
# is too old for our crates). cargo install writes to CARGO_HOME, as in the Rust image.
build_builder_base() {
  debootstrap_import "$BUILDER_BASE" apt gcc,libc6-dev,pkg-config,libssl-dev,ca-certificates \
    -- 'ENV PATH=/usr/local/cargo/bin:/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV CARGO_HOME=/usr/local/cargo'
}

# The service's image: the Dockerfile as users build it, except that its `build` stage is
# replaced by a folder holding the binary of BUILD_PROFILE that build_bins made (podman's
# --build-context, BuildKit's too): the runtime stage, everything that ships, is theirs, and
# the service is not compiled a second time (docs/CONTAINER.md).
build_image() {
  local built="$WORK/build-stage"
  install -D -m 0755 "$(bin_path order-service)" "$built/usr/local/bin/order-service"
  say "container: building $SERVICE_IMAGE (the runtime stage around the ${BUILD_PROFILE:-release} binary)"
  # Docker's format: OCI's has no HEALTHCHECK. No layer cache: nothing of it may stay behind.
  podman build --quiet --format docker --layers=false --pull=never -f "$ROOT/Dockerfile" \
    --build-context build="$built" --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" \
    --build-arg VERSION="$(cargo_version)" --build-arg REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$SERVICE_IMAGE" "$ROOT" >/dev/null
  rm -rf "$built"
}

cargo_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1; }

# podman-compose, its chatter (every podman command, and podman's complaints that there is no
# systemd to run health checks) in a log that is shown when it fails.
compose() {
  podman-compose -p "$NAME" -f "$ROOT/docker-compose.yml" "$@" >>"$WORK/compose.log" 2>&1 ||
    { tail -n 20 "$WORK/compose.log" >&2; say "error: podman-compose $* failed (log above)"; return 1; }
}

# quietly CMD...: runs a podman command with its complaints that no systemd runs health checks
# kept in a log, shown when the command fails.
quietly() {
  "$@" 2>>"$WORK/podman.log" >/dev/null ||
    { tail -n 20 "$WORK/podman.log" >&2; say "error: $* failed (log above)"; return 1; }
}

# container SERVICE: the name of the compose service's container.
container() {
  podman ps -a --filter "label=io.podman.compose.project=$NAME" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n1
}

# wait_healthy CONTAINER SECONDS: runs the container's own health check until it passes, as
# Docker would; podman runs none by itself without systemd. Dies with the container's log
# when it stops or SECONDS pass.
wait_healthy() {
  local ctr="$1" within="$2" tries=0
  podman inspect --format '{{json .Config.Healthcheck}}' "$ctr" | grep -q '"Test"' ||
    die "$ctr has no health check (was the image built with --format docker?)"
  until podman healthcheck run "$ctr" >/dev/null 2>&1; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$ctr")" != true ]; then
      podman logs --tail 20 "$ctr" >&2
      die "$ctr stopped before it was healthy (log above)"
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge "$within" ]; then
      podman logs --tail 20 "$ctr" >&2
      die "$ctr was not healthy within $within s (log above)"
    fi
    sleep 1
  done
}

# seconds_since_start CONTAINER: seconds from the container's start until now, to 0.1 s.
seconds_since_start() {
  local started
  started="$(podman inspect --format '{{.State.StartedAt.Format "2006-01-02T15:04:05.000000000Z07:00"}}' "$1")"
  awk -v now="$(date +%s.%N)" -v then="$(date -d "$started" +%s.%N)" 'BEGIN { printf "%.1f", now - then }'
}

# wait_ready CONTAINER: polls /health/ready every 0.1 s for at most 60 s; prints how long
# after its start the service first answered 200.
# A start that failed (the restart policy starts it again) fails here at once, with its log.
wait_ready() {
  local tries=0
  until curl -fs -o /dev/null --max-time 1 "$BASE_URL/health/ready"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 600 ] || { [ $((tries % 10)) = 0 ] &&
      [ "$(podman inspect --format '{{.RestartCount}} {{.State.Running}}' "$1")" != "0 true" ]; }; then
      podman logs --tail 20 "$1" >&2
      die "$1 stopped, or $BASE_URL/health/ready did not answer 200 within 60 s (log above)"
    fi
    sleep 0.1
  done
  seconds_since_start "$1"
}

orders_created() {
  curl -fs --max-time 2 "$BASE_URL/metrics" | awk '$1 == "ordersvc_orders_created_total" { printf "%d", $2 }'
}

# The process in the container runs as the image's user, and that is not root.
check_user() {
  local ctr="$1" want pid uid
  want="$(podman image inspect --format '{{.Config.User}}' "$SERVICE_IMAGE")"
  want="${want%%:*}"
  pid="$(podman inspect --format '{{.State.Pid}}' "$ctr")"
  uid="$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"
  [ -n "$want" ] && [ "$want" != 0 ] && [ "$want" != root ] || die "the image's USER is '${want}', not a non-root uid"
  [ "$uid" = "$want" ] || die "the service runs as uid $uid, not the image's $want"
  say "container: the service runs as uid $uid (the image's USER), not root"
}

# stop_under_load CONTAINER ORDERS: a stress run of ORDERS creates, each read back and counted
# in the database; once a quarter of them are in, `podman stop` (SIGTERM, SIGKILL after 10 s).
# The service drains: not ready, serving for SHUTDOWN_GRACE (5 s), then in-flight requests
# finish. Every request of the run must succeed and the service must exit 0.
stop_under_load() {
  local ctr="$1" orders="$2" log="$WORK/stop-under-load.log" before load i status=0 code result failed sent stopped
  before="$(orders_created)"
  # Through a pool of idle connections, as an HTTP client library keeps them: a draining
  # service closes each connection after its answer (Connection: close), and the next request
  # goes out on another.
  "$ROOT/scripts/stress.sh" "$orders" 50 --max-idle 50 >"$log" 2>&1 &
  load=$!
  for ((i = 0; i < 1200; i++)); do
    [ $(($(orders_created) - before)) -ge $((orders / 4)) ] && break
    kill -0 "$load" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$load" 2>/dev/null || { cat "$log" >&2; die "the load ended before the stop was sent: nothing was tested"; }
  say "container: podman stop with $(($(orders_created) - before)) of $orders orders in"
  sent="$(date +%s.%N)"
  quietly podman stop --time 10 "$ctr"
  stopped="$(awk -v a="$sent" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  wait "$load" || status=$?
  code="$(podman inspect --format '{{.State.ExitCode}}' "$ctr")"
  result="$(grep '^RESULT ' "$log" | tail -n1)" || true
  failed="$(field failed "$result")"
  say "container: stop under load: podman stop returned after $stopped s, exit code $code; stress: ${result:-no RESULT line}, exit status $status"
  [ -n "$failed" ] || { cat "$log" >&2; die "the stress run printed no RESULT line"; }
  [ "$failed" = 0 ] || { tail -n 20 "$log" >&2; die "$failed requests failed while the service stopped"; }
  [ "$status" = 0 ] || { tail -n 20 "$log" >&2; die "the stress run failed (exit $status): an order was not read back or not counted"; }
  [ "$code" = 0 ] || { podman logs --tail 20 "$ctr" >&2; die "the service exited with $code after SIGTERM, not 0 (137: killed after 10 s)"; }
}

# stop_with_sigint CONTAINER: started again, then SIGINT, as Ctrl-C in `docker run` sends.
stop_with_sigint() {
  local ctr="$1" code ready
  quietly podman start "$ctr"
  ready="$(wait_ready "$ctr")"
  say "container: started again; ready $ready s after its start"
  quietly podman kill --signal INT "$ctr"
  code="$(timeout 30 podman wait "$ctr")" || die "the service did not stop within 30 s of SIGINT"
  [ "$code" = 0 ] || { podman logs --tail 20 "$ctr" >&2; die "the service exited with $code after SIGINT, not 0"; }
  say "container: SIGINT: exit code 0"
}

# What podman holds: containers, images, volumes, networks, pods (one id or name a line).
podman_objects() {
  podman ps -aq --no-trunc
  podman images -aq --no-trunc
  podman volume ls -q
  podman network ls -q
  podman pod ls -q --no-trunc
}

# Removes everything the round made, and fails when something else of it is left.
teardown() {
  local status=$? left base
  trap - EXIT
  say "container: tearing down"
  compose down --volumes || true
  podman network rm --force "${NAME}_default" >/dev/null 2>&1 || true
  podman rmi --force "$SERVICE_IMAGE" "$FULL_IMAGE" >/dev/null 2>&1 || true
  if [ "${CONTAINER_KEEP_BASES:-0}" = 1 ]; then
    # Kept on purpose: not counted as left behind.
    for base in "$RUNTIME_BASE" "$POSTGRES_BASE" "$BUILDER_BASE"; do
      OBJECTS_BEFORE+=$'\n'"$(podman images -q --no-trunc "$base")"
    done
  else
    podman rmi --force "$RUNTIME_BASE" "$POSTGRES_BASE" "$BUILDER_BASE" >/dev/null 2>&1 || true
  fi
  # The full build's layer cache: every image that it added and no name above covers.
  if [ "${REMOVE_NEW_IMAGES:-0}" = 1 ]; then
    comm -13 <(sort <<<"$OBJECTS_BEFORE") <(podman images -aq --no-trunc | sort) |
      xargs -r podman rmi --force >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  left="$(comm -13 <(sort <<<"$OBJECTS_BEFORE") <(podman_objects | sort))"
  if [ -n "$left" ]; then
    say "container: left behind (podman containers, images, volumes, networks, pods):"
    say "$left"
    [ "$status" -ne 0 ] || status=1
  fi
  exit "$status"
}

test_round() {
  local started pg svc ready
  started="$SECONDS"
  setup_podman
  load_env
  # The stack's settings, whatever a developer's .env says: ports of its own, known
  # credentials, an open API.
  export PORT="${CONTAINER_PORT:-27080}" POSTGRES_PORT="${CONTAINER_PG_PORT:-27432}" \
    POSTGRES_USER=user POSTGRES_PASSWORD=password POSTGRES_DBNAME=orderdb API_KEYS= API_KEY= \
    RUST_LOG=info SHUTDOWN_GRACE=5s ORDERSVC_IMAGE="$SERVICE_IMAGE" POSTGRES_IMAGE="$POSTGRES_BASE"
  export BASE_URL="http://127.0.0.1:$PORT" \
    DATABASE_URL="postgres://user:password@127.0.0.1:$POSTGRES_PORT/orderdb"
  curl -s -o /dev/null --max-time 2 "$BASE_URL/health" && die "something already answers on $BASE_URL"

  # A run that died half-way may have left its stack: start clean.
  mkdir -p "$WORK"
  compose down --volumes || true
  podman network rm --force "${NAME}_default" >/dev/null 2>&1 || true
  OBJECTS_BEFORE="$(podman_objects)"
  trap teardown EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  build_bins
  podman image exists "$RUNTIME_BASE" || build_runtime_base
  podman image exists "$POSTGRES_BASE" || build_postgres_base
  build_image
  say "container: $SERVICE_IMAGE: $(podman image inspect --format '{{.Size}}' "$SERVICE_IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }'); binary $(stat -c %s "$(bin_path order-service)" | awk '{ printf "%.1f MB", $1 / 1e6 }')"

  # podman-compose ignores depends_on's condition: PostgreSQL is brought up and waited for
  # first, as docker compose would do it.
  say "container: starting the stack (podman-compose, project $NAME)"
  compose up -d postgres
  pg="$(container postgres)"
  wait_healthy "$pg" 60
  # (podman-compose 1.0.3 tries to create postgres again, fails on the name, and starts the
  # running container: harmless.)
  compose up -d --no-deps order-service
  svc="$(container order-service)"
  ready="$(wait_ready "$svc")"
  say "container: $svc ready $ready s after its start (migrations included)"
  wait_healthy "$svc" 30
  say "container: both healthy by their own health checks"
  check_user "$svc"
  [ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$svc")" = true ] ||
    die "the service's root file system is writable: compose's read_only did not apply"

  "$ROOT/scripts/stress.sh" 1000 100
  "$ROOT/scripts/test-api.sh"
  stop_under_load "$svc" 2000
  stop_with_sigint "$svc"
  say "container: passed in $((SECONDS - started)) s"
}

# The Dockerfile as users build it, all stages, with the host's toolchain in place of the Rust
# image; then the image's size, and a run of its binary in the runtime stage.
full_build() {
  local started out
  setup_podman
  mkdir -p "$WORK"
  OBJECTS_BEFORE="$(podman_objects)"
  REMOVE_NEW_IMAGES=1
  trap teardown EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  podman image exists "$RUNTIME_BASE" || build_runtime_base
  podman image exists "$BUILDER_BASE" || build_builder_base
  say "container: the Dockerfile's full build (cargo-chef, dependencies, service), as users run it"
  started="$SECONDS"
  # This machine's CA bundle too: it may trust a proxy that stands between it and crates.io.
  podman build --format docker --pull=never -f "$ROOT/Dockerfile" \
    -v "$(rustc --print sysroot):/opt/rust:ro" \
    -v "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}:/etc/ssl/certs/ca-certificates.crt:ro" \
    --build-arg RUST_IMAGE="$BUILDER_BASE" --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" \
    --build-arg VERSION="$(cargo_version)" --build-arg REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$FULL_IMAGE" "$ROOT"
  say "container: full build took $((SECONDS - started)) s; $FULL_IMAGE: $(podman image inspect --format '{{.Size}}' "$FULL_IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
  # Its binary starts in the runtime stage (its libraries are there): with nothing to ask,
  # the health check says so and fails.
  out="$(podman run --rm --pull=never --no-healthcheck "$FULL_IMAGE" healthcheck live 2>&1)" && die "healthcheck passed with no server: $out"
  grep -q 'Connection refused' <<<"$out" || die "the binary did not run in the runtime stage: $out"
  say "container: its binary runs in the runtime stage ($out)"
}

# (Sourced, it only defines its functions.)
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
case "${1:-}" in
  test) test_round ;;
  full-build) full_build ;;
  *) die "usage: $0 test|full-build" ;;
esac
