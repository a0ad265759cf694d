# Shared by scripts/run, test, bench, check_api and check_web. Source it; do not run it.
# Private PostgreSQL and Redis servers under .local/, on loopback only.

set -euo pipefail

PARLEY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARLEY_PACKAGES=(libhiredis-dev libsodium-dev libcurl4-openssl-dev libssl-dev libcrack2-dev cracklib-runtime postgresql redis-server python3-aiosmtpd curl)
# what the tests need besides: nginx in front of gateways, checks of the
# deployment files, and a browser for the web client
PARLEY_TEST_PACKAGES=(nginx python3-yaml python3-venv docker-compose systemd chromium chromium-driver)

# credentials in a URL (postgres://user:PASSWORD@…) are masked: logs keep no secrets
log() { printf '\033[1m==> %s\033[0m\n' "$(printf '%s' "$*" | sed -E 's#(://[^:/@[:space:]]*:)[^@[:space:]]+@#\1***@#g')" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Swift on PATH, at least 6.1: checked before anything slow happens.
PARLEY_SWIFT_MINIMUM=6.1
ensure_swift() {
  command -v swift >/dev/null \
    || die "swift is not on PATH: Swift $PARLEY_SWIFT_MINIMUM or newer is needed (https://www.swift.org/install/linux/)"
  local version
  version=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9.]*\).*/\1/p' | head -n 1)
  [ -n "$version" ] || die "could not read the version of $(command -v swift) (swift --version); Swift $PARLEY_SWIFT_MINIMUM or newer is needed"
  [ "$(printf '%s\n%s\n' "$PARLEY_SWIFT_MINIMUM" "$version" | sort -V | head -n 1)" = "$PARLEY_SWIFT_MINIMUM" ] \
    || die "Swift $version is too old: $PARLEY_SWIFT_MINIMUM or newer is needed (https://www.swift.org/install/linux/)"
}

# Installs the Debian packages that are missing (nothing if all are there);
# extra arguments are more packages to require.
ensure_packages() {
  ensure_swift
  command -v dpkg-query >/dev/null || die "dpkg-query not found: the scripts need Debian or Ubuntu (packages: ${PARLEY_PACKAGES[*]} $*)"
  local missing=()
  for pkg in "${PARLEY_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing packages: ${missing[*]} (apt-get not found: install them by hand)"
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
      die "missing packages: ${missing[*]} (run as root, or install sudo, or install them by hand)"
    fi
    log "installing ${missing[*]}"
    as_root apt-get update -qq || die "apt-get update failed (missing packages: ${missing[*]})"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install failed for: ${missing[*]}"
  fi
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  echo "$dir"
}

# .local/venv with the pinned tools of scripts/requirements-test.txt, from
# PyPI; reinstalled when that file changes.
ensure_venv() {
  local venv="$PARLEY_ROOT/.local/venv" wanted="$PARLEY_ROOT/scripts/requirements-test.txt"
  if [ ! -x "$venv/bin/pip" ]; then
    mkdir -p "$PARLEY_ROOT/.local"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" || { rm -rf "$venv"; die "could not create a Python venv in .local/venv (is python3-venv installed?)"; }
  fi
  if ! cmp -s "$wanted" "$venv/requirements-test.txt"; then
    log "installing the Python test tools (scripts/requirements-test.txt) into .local/venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$wanted" || die "pip could not install scripts/requirements-test.txt into .local/venv"
    cp "$wanted" "$venv/requirements-test.txt"
  fi
}

# A TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
}

random_secret() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(int(__import__("sys").argv[1])))' "${1:-32}"
}

# PostgreSQL refuses to run as root: when root, the cluster belongs to the
# 'postgres' system user (created by the Debian package).
pg_run() {
  # from /: postgres may not be allowed into the current folder
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# The folder under which a private PostgreSQL cluster lives. As an ordinary
# user that is .local/ of the checkout. As root the server runs as
# 'postgres', who cannot enter a checkout below a private folder (root's home
# is mode 700, and so is anything mktemp -d makes): the clusters of this
# checkout then live in /var/tmp/parley-<hash of the checkout's path>, owned
# by 'postgres' and private to it.
pg_parent_path() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$PARLEY_ROOT/.local"
  else
    echo "/var/tmp/parley-$(printf '%s' "$PARLEY_ROOT" | sha256sum | cut -c1-16)"
  fi
}

# The same, created if needed (and checked: /var/tmp is shared).
pg_parent() {
  local dir
  dir="$(pg_parent_path)"
  if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$dir"
    echo "$dir"
    return
  fi
  id postgres >/dev/null 2>&1 || die "the 'postgres' system user is missing (it comes with Debian's postgresql package)"
  if [ ! -e "$dir" ]; then
    mkdir -m 700 "$dir" && chown postgres:postgres "$dir" || die "could not create $dir"
  fi
  if [ -L "$dir" ] || [ ! -d "$dir" ] || [ "$(stat -c %U "$dir")" != postgres ]; then
    die "$dir is not a folder owned by postgres: remove it and try again"
  fi
  echo "$dir"
}

# start_postgres DIR PORT [fast]: initialises DIR on first use, starts the
# server on 127.0.0.1:PORT, creates database 'parley' (role 'parley', password
# in DIR/password). "fast" trades durability for speed (tests only).
start_postgres() {
  local dir="$1" port="$2" mode="${3:-durable}" bin
  bin=$(pg_bindir)
  mkdir -p "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir/data"
    [ -f "$dir/password" ] || (umask 077; random_secret 24 > "$dir/password")
    mkdir -p "$dir/data" "$dir/socket"
    chmod 700 "$dir" "$dir/data"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$dir"; fi
    pg_run "$bin/initdb" -D "$dir/data" -U parley --pwfile="$dir/password" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  stop_postgres "$dir" 2>/dev/null || true
  local opts="-p $port -k $dir/socket -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=256MB ${PARLEY_PG_OPTIONS:-}"
  if [ "$mode" = fast ]; then opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  pg_run "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL did not start (log: $dir/server.log)"; }
  pg_run "$bin/psql" -h "$dir/socket" -p "$port" -U parley -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'parley'" | grep -q 1 \
    || pg_run "$bin/createdb" -h "$dir/socket" -p "$port" -U parley parley
}

stop_postgres() {
  local dir="$1"
  [ -f "$dir/data/postmaster.pid" ] || return 0
  pg_run "$(pg_bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

postgres_url() { # DIR PORT [DATABASE]
  echo "postgres://parley:$(cat "$1/password")@127.0.0.1:$2/${3:-parley}"
}

# start_redis DIR PORT: a private redis-server with a password and an
# append-only file, so that mail jobs survive a restart.
start_redis() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  [ -f "$dir/password" ] || random_secret 24 > "$dir/password"
  stop_redis "$dir"
  umask 077
  cat > "$dir/redis.conf" <<CONF
port $port
bind 127.0.0.1
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
requirepass $(cat "$dir/password")
appendonly yes
appendfsync everysec
save ""
CONF
  umask 022
  redis-server "$dir/redis.conf" || die "redis-server did not start (log: $dir/redis.log)"
  for _ in $(seq 1 100); do
    REDISCLI_AUTH="$(cat "$dir/password")" redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  die "redis-server did not answer on port $port (log: $dir/redis.log)"
}

stop_redis() {
  local dir="$1" pid
  [ -f "$dir/redis.pid" ] || return 0
  pid=$(cat "$dir/redis.pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$dir/redis.pid"
}

redis_url() { # DIR PORT
  echo "redis://:$(cat "$1/password")@127.0.0.1:$2/0"
}

# start_redis_cluster DIR: a private Redis Cluster of three masters with one
# replica each (six redis-servers on free loopback ports, each with its
# cluster bus on a free port of its own), one password for clients and
# replication, append-only files. Failover is quick (node timeout 2 s).
# The nodes' addresses go to DIR/seeds (any of them tells a client the rest).
start_redis_cluster() {
  local dir="$1" node port bus nodes=() version
  version="$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')"
  [ "${version:-0}" -ge 7 ] || die "a Redis Cluster with sharded pub/sub needs redis-server 7 or later (found $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'))"
  mkdir -p "$dir"
  [ -f "$dir/password" ] || random_secret 24 > "$dir/password"
  stop_redis_cluster "$dir"
  for node in 1 2 3 4 5 6; do
    port=$(free_port); bus=$(free_port)
    mkdir -p "$dir/$node"
    rm -f "$dir/$node/nodes.conf" "$dir/$node"/appendonly* 2>/dev/null; rm -rf "$dir/$node/appendonlydir"
    umask 077
    cat > "$dir/$node/redis.conf" <<CONF
port $port
cluster-port $bus
bind 127.0.0.1
dir $dir/$node
daemonize yes
pidfile $dir/$node/redis.pid
logfile $dir/$node/redis.log
requirepass $(cat "$dir/password")
masterauth $(cat "$dir/password")
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
repl-diskless-sync-delay 0
appendonly yes
appendfsync everysec
save ""
CONF
    umask 022
    redis-server "$dir/$node/redis.conf" || die "redis-server (cluster node $node) did not start (log: $dir/$node/redis.log)"
    nodes+=("127.0.0.1:$port")
  done
  node=0
  for address in "${nodes[@]}"; do
    node=$((node + 1))
    for _ in $(seq 1 100); do
      REDISCLI_AUTH="$(cat "$dir/password")" redis-cli -p "${address##*:}" ping 2>/dev/null | grep -q PONG && continue 2
      sleep 0.1
    done
    die "redis-server (cluster node $node) did not answer on port ${address##*:} (log: $dir/$node/redis.log)"
  done
  REDISCLI_AUTH="$(cat "$dir/password")" redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes > "$dir/create.log" 2>&1 \
    || die "redis-cli --cluster create failed (log: $dir/create.log)"
  for _ in $(seq 1 200); do
    local ok=1
    for address in "${nodes[@]}"; do
      REDISCLI_AUTH="$(cat "$dir/password")" redis-cli -p "${address##*:}" cluster info 2>/dev/null | grep -q "cluster_state:ok" || ok=0
    done
    if [ "$ok" = 1 ]; then
      printf '%s\n' "${nodes[@]}" > "$dir/seeds"
      return 0
    fi
    sleep 0.1
  done
  die "the Redis Cluster did not reach cluster_state:ok (logs: $dir/*/redis.log)"
}

stop_redis_cluster() { # DIR
  local node
  for node in 1 2 3 4 5 6; do [ -d "$1/$node" ] && stop_redis "$1/$node"; done
  return 0
}

redis_cluster_url() { # DIR
  echo "redis+cluster://:$(cat "$1/password")@$(paste -sd, "$1/seeds")"
}

# The gateway settings of the benchmark scripts (exported): development mode,
# a fresh JWT secret, warnings only. The load comes from one process on
# loopback: per-IP limits apply to the X-Forwarded-For address it sends, and
# per-user limits leave room for the history seeding (two users) and for
# many sockets per user.
export_bench_settings() {
  export PARLEY_ENV=development
  export PARLEY_JWT_SECRET="$(random_secret 48)"
  export PARLEY_LOG_LEVEL=warning
  export PARLEY_TRUSTED_PROXIES=127.0.0.1
  export PARLEY_SENDS_PER_SECOND=2000
  export PARLEY_WS_CONNECTIONS_PER_USER=100
}

# start_gateway BIN NAME PORT LOG_DIR [METRICS_PORT]: `BIN serve` in the
# background (instance id NAME, its log LOG_DIR/NAME.log, metrics on
# METRICS_PORT or a free port); sets GATEWAY_PID, adds it to the caller's
# `pids` array, and returns once /readyz answers.
start_gateway() {
  PARLEY_INSTANCE_ID="$2" PARLEY_METRICS_PORT="${5:-$(free_port)}" "$1" serve --no-migrate --port "$3" > "$4/$2.log" 2>&1 &
  GATEWAY_PID=$!
  pids+=("$GATEWAY_PID")
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "gateway $2 on port $3 is not ready (log: $4/$2.log)"
}
