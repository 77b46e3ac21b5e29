# The loopback test cluster: SSH "nodes" on 127.0.1.x and the stub DC/OS installer.
# Source after scripts/lib/common.sh and scripts/lib/moto.sh; call stack_start_moto first.
#
#   stack_start_nodes       OpenSSH on port $FLOTILLA_TEST_SSH_PORT of every address
#                           127.0.1.4 ... 127.0.1.254 (the private IPs the emulator hands out
#                           in subnet 127.0.1.0/24; FLOTILLA_TEST_NODE_SUBNET, read by
#                           scripts/fixtures/loopback-network.py too, names a larger one for
#                           runs that launch more than 251 instances, such as
#                           127.0.8.0/22). A connection to 127.0.1.N is a connection
#                           to "the instance with private IP 127.0.1.N": sshd accepts exactly
#                           the public key of that instance's key pair, looked up in the
#                           emulator, as EC2's key injection would, and none when the image's
#                           cloud-init could not have read it (HttpTokens=required and a
#                           cloud-init before 19.4: scripts/fixtures/node-ec2.py). Every session gets
#                           PATH=$STACK_DIR/dcos-stub/state/shims:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
#                           (sshd_config SetEnv): the OS shims stack_start_installer writes
#                           (rpm, yum, systemctl, docker, ...; scripts/fixtures/dcos-stub/README.md)
#                           answer from the node's modelled operating system. Exports:
#                             FLOTILLA_TEST_SSH_PORT      the port, on every node address
#                             FLOTILLA_TEST_SSH_USER      the login user (the user running this)
#                             FLOTILLA_TEST_SSH_USER_ALT  a second login (an alias of root, uid 0: the node
#                                                         model's shims run as root), for images whose
#                                                         catalogue entry names it as their `ssh_user`
#                             FLOTILLA_TEST_SSH_HOST_KEY  the nodes' host public key file
#                             FLOTILLA_TEST_SSH_LOG       sshd's log (LogLevel VERBOSE)
#   stack_start_installer   the stub DC/OS installer (scripts/fixtures/dcos-stub) over HTTP on
#                           127.0.0.1. Exports:
#                             FLOTILLA_TEST_INSTALLER_URL  URL of dcos_generate_config.sh
#                             FLOTILLA_TEST_STUB_STATE     what ran where; tests write its `fail`
#                             FLOTILLA_TEST_CHECK_RUNNER   $FLOTILLA_TEST_STUB_STATE/bin/dcos-check-runner
#                             FLOTILLA_TEST_IP_DETECT      ip-detect script that works on these nodes
#                             FLOTILLA_TEST_NODE_SHIMS     the OS shim folder first on the nodes' PATH
#   stack_nodes_write_aws_conf
#                           (re)write the emulator coordinates both read, from
#                           FLOTILLA_TEST_AWS_{ENDPOINT,ACCESS_KEY_ID,SECRET_ACCESS_KEY,REGION}
#                           (FLOTILLA_TEST_AWS_REGIONS, comma or space separated, searches
#                           several regions), e.g. after switching credentials.
#
# Both need root (or passwordless sudo): sshd runs as root, the key lookup must be a
# root-owned command in a root-owned path, and the provisioner runs the installer with sudo.

# The addresses the emulator hands out in the nodes' subnet: the fourth host on (EC2 and the
# emulator keep the first three), up to the last before the broadcast address.
_nodes_addresses() {
  python3 - "${FLOTILLA_TEST_NODE_SUBNET:-127.0.1.0/24}" <<'PY'
import ipaddress, sys
net = ipaddress.ip_network(sys.argv[1])
if not net.subnet_of(ipaddress.ip_network("127.0.0.0/16")) or not 16 <= net.prefixlen <= 28 \
        or net.overlaps(ipaddress.ip_network("127.0.3.0/24")) or net.overlaps(ipaddress.ip_network("127.0.0.0/24")):
    sys.exit(f"FLOTILLA_TEST_NODE_SUBNET {net}: want a /16-/28 inside 127.0.0.0/16, clear of 127.0.0.0/24 and 127.0.3.0/24")
print(*list(net.hosts())[3:])
PY
}
# sshd accepts at most 16 listen sockets (MAX_LISTEN_SOCKS), so the node addresses (251 in a
# /24) are split over several sshd processes sharing one configuration, host key and log.
_NODES_PER_SSHD=16
# sshd runs an AuthorizedKeysCommand only from a path whose every directory is root-owned and
# not group- or world-writable: /tmp and most checkouts fail that, so the command is installed.
_NODES_LIBEXEC=/usr/local/libexec/flotilla-test

_nodes_sudo=""
[ "$(id -u)" -eq 0 ] || _nodes_sudo="sudo -n"

stack_nodes_write_aws_conf() {
  local dir="$STACK_DIR/nodes" tmp
  mkdir -p "$dir"
  tmp=$(umask 077 && mktemp "$dir/.aws.XXXXXX")
  python3 - "$dir" >"$tmp" <<'PY' || { rm -f "$tmp"; return 1; }
import ipaddress, json, os, pwd, re, sys, urllib.parse
env = os.environ
missing = [v for v in ("FLOTILLA_TEST_AWS_ENDPOINT", "FLOTILLA_TEST_AWS_ACCESS_KEY_ID",
                       "FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY") if not env.get(v)]
regions = re.split(r"[,\s]+", env.get("FLOTILLA_TEST_AWS_REGIONS") or env.get("FLOTILLA_TEST_AWS_REGION") or "")
regions = [r for r in regions if r]
if missing or not regions:
    sys.exit(f"[stack] {' '.join(missing) or 'FLOTILLA_TEST_AWS_REGION'} not set: start the emulator first (stack_start_moto)")
endpoint = env["FLOTILLA_TEST_AWS_ENDPOINT"]
host = urllib.parse.urlsplit(endpoint).hostname or ""
try:
    loopback = ipaddress.ip_address(host).is_loopback
except ValueError:
    loopback = host == "localhost"
if not loopback:
    sys.exit(f"[stack] FLOTILLA_TEST_AWS_ENDPOINT {endpoint} is not on 127.0.0.0/8")
json.dump({
    "endpoint": endpoint,
    "access_key_id": env["FLOTILLA_TEST_AWS_ACCESS_KEY_ID"],
    "secret_access_key": env["FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY"],
    "session_token": env.get("FLOTILLA_TEST_AWS_SESSION_TOKEN", ""),
    "regions": regions,
    "role_tag": "role",
    "user": env.get("FLOTILLA_TEST_SSH_USER") or pwd.getpwuid(os.getuid()).pw_name,
    "log": os.path.join(sys.argv[1], "authorized-keys.log"),
    "cache_dir": os.path.join(sys.argv[1], "authorized-keys.cache"),
    "image_catalogue": env.get("FLOTILLA_TEST_IMAGE_CATALOGUE", ""),
}, sys.stdout, indent=1)
PY
  $_nodes_sudo chown root:root "$tmp" && $_nodes_sudo mv -f "$tmp" "$dir/aws.json"
}

# Print the offending path component if PATH or one of its directories is not root-owned or
# is group/world-writable (sshd's rule for AuthorizedKeysCommand).
_nodes_unsafe_path() {
  local p=$1
  while :; do
    read -r uid mode < <(stat -c '%u %a' "$p")
    if [ "$uid" != 0 ] || (( 8#$mode & 8#022 )); then echo "$p (uid $uid, mode $mode)"; return 0; fi
    [ "$p" = / ] && return 1
    p=$(dirname "$p")
  done
}

# Install node-ec2.py as this stack's AuthorizedKeysCommand at path $1.
_nodes_install_keys_command() {
  local command=$1 py tmp bad
  # The system interpreter (root-owned) when there is one: the command needs only the stdlib.
  py=/usr/bin/python3
  [ -x "$py" ] || py=$(python3 -c 'import sys; print(sys.executable)')
  tmp=$(mktemp "$STACK_DIR/nodes/.keys.XXXXXX")
  { printf '#!%s -IS\n' "$py"; tail -n +2 "$FLOTILLA_ROOT/scripts/fixtures/node-ec2.py"; } >"$tmp"
  $_nodes_sudo install -d -o root -g root -m 0755 "$_NODES_LIBEXEC" "${command%/*}"
  $_nodes_sudo install -o root -g root -m 0755 "$tmp" "$command"
  rm -f "$tmp"
  if bad=$(_nodes_unsafe_path "$command"); then
    stack_log "sshd would refuse $command: $bad is not root-owned or is group/world-writable"
    return 1
  fi
}

# Succeeds when every node address listens on PORT (read from /proc/net/tcp).
_nodes_all_listening() {
  python3 - "$1" "${_NODES_ADDRS[@]}" <<'PY'
import socket, struct, sys
port, want = int(sys.argv[1]), set(sys.argv[2:])
with open("/proc/net/tcp") as f:
    for line in f.readlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:
            want.discard(socket.inet_ntoa(struct.pack("=I", int(addr, 16))))
sys.exit(1 if want else 0)
PY
}

_nodes_banner() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    sys.exit(0 if s.recv(64).startswith(b"SSH-2.0-") else 1)
PY
}

stack_start_nodes() {
  local dir="$STACK_DIR/nodes" sshd user command cfg log port attempt lo i pids addr first last
  stack_apt openssh-server openssh-client sudo curl
  read -r -a _NODES_ADDRS < <(_nodes_addresses) && (( ${#_NODES_ADDRS[@]} )) || return 1
  first=${_NODES_ADDRS[0]} last=${_NODES_ADDRS[-1]}
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  user=${FLOTILLA_TEST_SSH_USER:-$(id -un)}
  export FLOTILLA_TEST_SSH_USER=$user
  # A second login, as an image whose cloud-init makes another default user (ubuntu, ec2-user)
  # has: the key lookup accepts only the login of the instance's image.
  # Its home is root's and private, in a folder only root may create: a uid-0 login must not
  # run anything another user could have put in place.
  local alt=flotilla-alt alt_home=/var/lib/flotilla-test/alt-home
  $_nodes_sudo install -d -o root -g root -m 0755 /var/lib/flotilla-test
  $_nodes_sudo install -d -o root -g root -m 0700 "$alt_home"
  if ! getent passwd "$alt" >/dev/null; then
    # '*', not useradd's locked '!': sshd refuses a locked account even for keys. userdel -f:
    # root's processes use the uid.
    $_nodes_sudo useradd -o -u 0 -g 0 -p '*' -M -d "$alt_home" -s /bin/bash -c "Flotilla loopback node login" "$alt" \
      || { stack_log "cannot add the second node login $alt"; return 1; }
    stack_on_exit "$_nodes_sudo userdel -f $alt"
  elif [ "$(getent passwd "$alt" | cut -d: -f6)" != "$alt_home" ]; then
    $_nodes_sudo usermod -d "$alt_home" "$alt"
  fi
  export FLOTILLA_TEST_SSH_USER_ALT=$alt
  mkdir -p "$dir"
  stack_nodes_write_aws_conf || return 1
  command="$_NODES_LIBEXEC/${STACK_DIR##*/}/authorized-keys"
  # Remove what this creates; the shared parents only when empty (other stacks may run).
  local parents="'$_NODES_LIBEXEC'"
  [ -d "${_NODES_LIBEXEC%/*}" ] || parents+=" '${_NODES_LIBEXEC%/*}'"
  stack_on_exit "$_nodes_sudo rm -rf '${command%/*}'; $_nodes_sudo rmdir $parents"
  _nodes_install_keys_command "$command" || return 1
  $_nodes_sudo install -d -m 0755 /run/sshd  # sshd's privilege separation directory
  ssh-keygen -q -t ed25519 -N '' -C flotilla-test-node -f "$dir/ssh_host_ed25519_key"
  cfg="$dir/sshd_config"
  log="$dir/sshd.log"
  # The nodes' operating system is modelled: the shim folder (written by stack_start_installer)
  # comes first on every session's PATH, then the usual system folders. A node is not the
  # machine the tests run on, so its login shell must not read this machine's ~/.bashrc (bash
  # reads it for every SSH command unless SHLVL says it is a nested shell): here that file runs
  # `pyenv init`, dozens of processes and a lock per command, and puts pyenv before the shims.
  local shims="$STACK_DIR/dcos-stub/state/shims"
  cat >"$cfg" <<EOF
# sshd for the Flotilla loopback test cluster (scripts/lib/nodes.sh). The listen addresses
# come on the command line: $first ... $last, split over several sshd processes.
HostKey $dir/ssh_host_ed25519_key
PidFile none
LogLevel VERBOSE
UsePAM no
PermitRootLogin prohibit-password
AllowUsers $user $alt
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
AuthorizedKeysCommandUser root
UseDNS no
MaxStartups 1000
MaxSessions 1000
MaxAuthTries 10
LoginGraceTime 60
X11Forwarding no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
SetEnv PATH=$shims:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SHLVL=1
EOF
  # OpenSSH 9.8+ penalises sources that fail to authenticate; every test connects from 127.0.0.1.
  if $_nodes_sudo "$sshd" -t -f "$cfg" -o PerSourcePenalties=no 2>/dev/null; then
    echo "PerSourcePenalties no" >>"$cfg"
  fi
  # The key lookup needs the address the client connected to, and OpenSSH before 9.4 has no
  # %C token for AuthorizedKeysCommand: one Match block per node address passes it instead.
  for addr in "${_NODES_ADDRS[@]}"; do
    printf 'Match LocalAddress %s\n  AuthorizedKeysCommand %s --config %s %%u %s\n' \
      "$addr" "$command" "$dir/aws.json" "$addr"
  done >>"$cfg"
  $_nodes_sudo "$sshd" -t -f "$cfg" || { stack_log "sshd rejects $cfg"; return 1; }

  for attempt in 1 2 3; do
    port=${FLOTILLA_TEST_SSH_PORT:-$(stack_free_port)}
    pids=()
    for (( lo=0; lo<${#_NODES_ADDRS[@]}; lo+=_NODES_PER_SSHD )); do
      local listen=()
      for addr in "${_NODES_ADDRS[@]:lo:_NODES_PER_SSHD}"; do listen+=(-o "ListenAddress=$addr:$port"); done
      $_nodes_sudo "$sshd" -D -f "$cfg" -E "$log" "${listen[@]}" &
      pids+=($!)
    done
    if stack_wait_for "sshd on $first-$last port $port" 30 _nodes_all_listening "$port"; then
      break
    fi
    $_nodes_sudo kill "${pids[@]}" 2>/dev/null || true
    stack_log "sshd could not listen on every node address at port $port (attempt $attempt); see $log"
    if [ -n "${FLOTILLA_TEST_SSH_PORT:-}" ] || (( attempt == 3 )); then
      tail -n 20 "$log" >&2 2>/dev/null
      return 1
    fi
  done
  stack_on_exit "$_nodes_sudo kill ${pids[*]}"
  _nodes_banner "$first" "$port" && _nodes_banner "$last" "$port" \
    || { stack_log "sshd listens but does not answer on port $port"; return 1; }
  export FLOTILLA_TEST_SSH_PORT=$port
  export FLOTILLA_TEST_SSH_HOST_KEY="$dir/ssh_host_ed25519_key.pub"
  export FLOTILLA_TEST_SSH_LOG=$log
  stack_log "SSH nodes on $first-$last port $port as $user (${#pids[@]} sshd, log $log)"
}

stack_start_installer() {
  local dir="$STACK_DIR/dcos-stub" py port
  stack_pip PyYAML
  py=$(python3 -c 'import sys, yaml; print(sys.executable)')
  [ -f "$STACK_DIR/nodes/aws.json" ] || stack_nodes_write_aws_conf || return 1
  mkdir -p "$dir/state/nodes" "$dir/state/genconf" "$dir/www"
  # A deploy writes what DC/OS's /opt/mesosphere holds for agents' tools (environment.export,
  # the integration-test folder); every loopback node is this machine, so they share it.
  [ -e /opt/mesosphere ] || stack_on_exit "$_nodes_sudo rm -rf /opt/mesosphere"
  : >"$dir/state/fail"
  "$py" "$FLOTILLA_ROOT/scripts/fixtures/dcos-stub/stub.py" render-installer \
    --out "$dir/www/dcos_generate_config.sh" --state "$dir/state" --aws-conf "$STACK_DIR/nodes/aws.json"
  # The OS shims on the nodes' PATH (stack_start_nodes puts this folder first).
  "$py" "$FLOTILLA_ROOT/scripts/fixtures/dcos-stub/stub.py" render-shims \
    --out-dir "$dir/state/shims" --state "$dir/state" --aws-conf "$STACK_DIR/nodes/aws.json"
  port=$(stack_free_port)
  "$py" -m http.server --bind 127.0.0.1 --directory "$dir/www" "$port" >"$dir/http.log" 2>&1 &
  stack_on_exit "kill $!"
  export FLOTILLA_TEST_INSTALLER_URL="http://127.0.0.1:$port/dcos_generate_config.sh"
  stack_wait_for "the stub DC/OS installer on port $port" 10 curl -sf -o /dev/null "$FLOTILLA_TEST_INSTALLER_URL" \
    || { cat "$dir/http.log" >&2; return 1; }
  export FLOTILLA_TEST_STUB_STATE="$dir/state"
  export FLOTILLA_TEST_CHECK_RUNNER="$dir/state/bin/dcos-check-runner"
  export FLOTILLA_TEST_IP_DETECT="$FLOTILLA_ROOT/scripts/fixtures/dcos-stub/ip-detect-loopback"
  export FLOTILLA_TEST_NODE_SHIMS="$dir/state/shims"
  stack_log "stub DC/OS installer at $FLOTILLA_TEST_INSTALLER_URL (state $FLOTILLA_TEST_STUB_STATE)"
}
