# Shared plumbing for scripts/test, scripts/demo and scripts/bench.
# Source it; it sets up a temporary stack folder and a cleanup trap that stops
# everything the scripts started, on success, failure or Ctrl-C.
#
# Functions:
#   stack_on_exit CMD...     run CMD when the script exits (last registered runs first)
#   stack_free_port          print a free TCP port on 127.0.0.1
#   stack_wait_for DESC SECONDS CMD...   poll CMD until it succeeds, or fail saying DESC
#   stack_apt PKG...         apt-get install the packages whose commands are missing
#   stack_pip SPEC...        pip install the specs that are missing
#   stack_start_postgres     start an ephemeral PostgreSQL; exports DATABASE_URL, PG*
set -euo pipefail

FLOTILLA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export FLOTILLA_ROOT
MOTO_VERSION=5.2.1

STACK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-stack.XXXXXX")
chmod 755 "$STACK_DIR"
export STACK_DIR
_stack_exit_cmds=()

stack_log() { printf '[stack] %s\n' "$*" >&2; }

stack_on_exit() { _stack_exit_cmds+=("$*"); }

# Runs process $1 (and the threads it has) ahead of ordinary processes: nice -5. For the
# stand-ins of AWS services, which a loaded test machine must not starve. Needs root (or sudo -n).
stack_prioritise() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  $sudo renice -n -5 -p "$1" >/dev/null 2>&1 || stack_log "could not raise the priority of pid $1 (not root)"
}

_stack_cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i
  for (( i=${#_stack_exit_cmds[@]}-1; i>=0; i-- )); do
    eval "${_stack_exit_cmds[$i]}" >/dev/null 2>&1 || true
  done
  rm -rf "$STACK_DIR" 2>/dev/null || true
  exit "$status"
}
trap _stack_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port free on 127.0.0.1 and on the loopback node addresses (127.0.1.x, or
# FLOTILLA_TEST_NODE_SUBNET's), where servers of an earlier stack may still listen.
stack_free_port() {
  python3 -c '
import ipaddress, socket, sys
nodes = list(ipaddress.ip_network(sys.argv[1]).hosts())[3:]
for _ in range(100):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    others = []
    try:
        for host in (str(nodes[0]), str(nodes[len(nodes) // 2]), str(nodes[-1])):
            s = socket.socket()
            others.append(s)
            s.bind((host, port))
    except OSError:
        continue
    finally:
        probe.close()
        for s in others:
            s.close()
    print(port)
    break
else:
    raise SystemExit("no free port found")
' "${FLOTILLA_TEST_NODE_SUBNET:-127.0.1.0/24}"
}

stack_wait_for() {
  local desc=$1 seconds=$2; shift 2
  local deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then
      stack_log "gave up after ${seconds}s waiting for $desc"
      return 1
    fi
    sleep 0.1
  done
}

_stack_apt_updated=0
stack_apt() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  (( ${#missing[@]} == 0 )) && return 0
  stack_log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if (( _stack_apt_updated == 0 )); then
    $sudo apt-get update -qq
    _stack_apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

stack_pip() {
  local missing=()
  local spec
  for spec in "$@"; do
    python3 - "$spec" <<'PY' 2>/dev/null || missing+=("$spec")
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
r = Requirement(sys.argv[1])
assert r.specifier.contains(version(r.name), prereleases=True)
PY
  done
  (( ${#missing[@]} == 0 )) && return 0
  stack_log "installing PyPI packages: ${missing[*]}"
  python3 -m pip install -q --disable-pip-version-check "${missing[@]}"
  hash -r
}

# The Debian and PyPI packages the local stack needs.
stack_install() {
  stack_apt postgresql openssh-server openssh-client libssl-dev libpq-dev curl sudo python3-pip openssl
  # A test host in a network namespace of its own (ip netns, veth) reaches PostgreSQL from a
  # non-loopback address.
  stack_apt iproute2
  # The web page's test drives headless Chromium through its driver (both from Debian).
  stack_apt chromium chromium-driver
  # scripts/schema renders the cluster state diagram with Graphviz's dot.
  stack_apt graphviz
  python3 -c 'import packaging' 2>/dev/null || python3 -m pip install -q packaging
  stack_pip "moto[server]==$MOTO_VERSION"
  # prometheus_client's parser reads /metrics whole; selenium drives chromedriver.
  stack_pip "prometheus_client==0.26.0" "selenium==4.51.0"
  # The placement tests count volumes with the AWS CLI, as an operator would.
  stack_pip "awscli==1.45.11"
  if ! command -v swift >/dev/null 2>&1; then
    [ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
  fi
  command -v swift >/dev/null 2>&1 || { stack_log "swift is not on PATH"; return 1; }
}

_pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

# TLS for the test server: a CA made for this run, a server certificate for 127.0.0.1 and
# localhost signed by it, and a second CA that signed nothing (to prove verification). The
# login flotilla_tls may connect over TLS only (pg_hba), so a test can tell TLS was used.
# Exports FLOTILLA_TEST_PG_CA and FLOTILLA_TEST_PG_OTHER_CA.
_stack_pg_tls() {
  local data=$1 tls=$1/tls
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=flotilla test CA" -keyout ca.key -out ca.crt
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=someone else's CA" -keyout other-ca.key -out other-ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt
  ) >"$STACK_DIR/tls.log" 2>&1 || { cat "$STACK_DIR/tls.log" >&2; return 1; }
  chmod 600 "$tls/server.key"
  chmod 644 "$tls/ca.crt" "$tls/other-ca.crt"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$tls/server.key" "$tls/server.crt"
  local hba="$data/data/pg_hba.conf"
  { printf 'hostssl all flotilla_tls 127.0.0.1/32 trust\nhostnossl all flotilla_tls 127.0.0.1/32 reject\n'; cat "$hba"; } >"$hba.new"
  mv "$hba.new" "$hba"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$hba"
  export FLOTILLA_TEST_PG_CA="$tls/ca.crt" FLOTILLA_TEST_PG_OTHER_CA="$tls/other-ca.crt"
}

# A test host: network namespace flotilla-PID with a veth pair, 10.231.N.1 on this side and
# 10.231.N.2 inside, so that a process run with `ip netns exec` reaches this machine from an
# address that is not loopback, and nothing else. Exports FLOTILLA_TEST_NETNS (the name),
# FLOTILLA_TEST_NETNS_HOST (this side's address) and FLOTILLA_TEST_NETNS_CLIENT. Removed at exit.
stack_make_netns() {
  local ns="flotilla-$$" n=$(( $$ % 250 + 1 )) sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  $sudo ip netns add "$ns" || { stack_log "cannot make network namespace $ns (ip netns needs root)"; return 1; }
  stack_on_exit "$sudo ip netns del $ns"
  stack_on_exit "$sudo ip link del flt$$h"
  $sudo ip link add "flt$$h" type veth peer name "flt$$n"
  $sudo ip link set "flt$$n" netns "$ns"
  $sudo ip addr add "10.231.$n.1/30" dev "flt$$h"
  $sudo ip link set "flt$$h" up
  $sudo ip netns exec "$ns" ip addr add "10.231.$n.2/30" dev "flt$$n"
  $sudo ip netns exec "$ns" ip link set "flt$$n" up
  $sudo ip netns exec "$ns" ip link set lo up
  export FLOTILLA_TEST_NETNS="$ns" FLOTILLA_TEST_NETNS_HOST="10.231.$n.1" FLOTILLA_TEST_NETNS_CLIENT="10.231.$n.2"
  stack_log "test host: network namespace $ns at $FLOTILLA_TEST_NETNS_CLIENT, this side $FLOTILLA_TEST_NETNS_HOST"
}

# Start PostgreSQL in $STACK_DIR/pg on a free loopback port (and on FLOTILLA_TEST_NETNS_HOST,
# for the test host only, when stack_make_netns ran). Exports DATABASE_URL and
# the PG* variables that libpq, psql and the Flotilla binaries read. max_connections is
# STACK_PG_MAX_CONNECTIONS (default 200, what the benchmarks run with).
stack_start_postgres() {
  local bin port data run_as=()
  bin=$(_pg_bin) || { stack_log "PostgreSQL server binaries not found"; return 1; }
  port=$(stack_free_port)
  data="$STACK_DIR/pg"
  mkdir -p "$data"
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root: run the server as the postgres system user.
    chown postgres:postgres "$data"
    run_as=(runuser -u postgres --)
  fi
  "${run_as[@]}" "$bin/initdb" -D "$data/data" -A trust -U flotilla -E UTF8 >"$STACK_DIR/initdb.log" 2>&1 \
    || { cat "$STACK_DIR/initdb.log" >&2; return 1; }
  _stack_pg_tls "$data" || return 1
  local listen=127.0.0.1
  if [ -n "${FLOTILLA_TEST_NETNS_HOST:-}" ]; then
    listen="127.0.0.1,$FLOTILLA_TEST_NETNS_HOST"
    printf 'host all all %s/32 trust\n' "$FLOTILLA_TEST_NETNS_CLIENT" >>"$data/data/pg_hba.conf"
  fi
  "${run_as[@]}" "$bin/pg_ctl" -D "$data/data" -l "$data/server.log" -w -t 30 \
    -o "-c listen_addresses=$listen -p $port -k $data -c max_connections=${STACK_PG_MAX_CONNECTIONS:-200} -c shared_buffers=256MB -c fsync=on -c ssl=on -c ssl_cert_file=$data/tls/server.crt -c ssl_key_file=$data/tls/server.key" \
    start >/dev/null
  stack_on_exit "${run_as[*]} $bin/pg_ctl -D $data/data -m immediate stop"
  export PGHOST=127.0.0.1 PGPORT=$port PGUSER=flotilla PGDATABASE=postgres
  export DATABASE_URL="postgres://flotilla@127.0.0.1:$port/postgres"
  stack_log "PostgreSQL on 127.0.0.1:$port"
}
