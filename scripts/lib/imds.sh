# The instance metadata service (IMDS) emulator for the loopback nodes. Source after
# scripts/lib/common.sh, moto.sh and nodes.sh; call after stack_start_moto and stack_start_nodes.
#
#   stack_start_imds       start scripts/fixtures/imds-emulator.py on a free 127.0.0.1 port in mode
#                          v2-only (what RunInstances with HttpTokens=required gives) and export:
#                            FLOTILLA_TEST_IMDS_ENDPOINT  http://127.0.0.1:PORT: render the node scripts
#                                                         (NodeScripts in Sources/AWSProvisioner) with their line
#                                                         `IMDS=http://169.254.169.254` set to this
#                            FLOTILLA_TEST_IMDS_CONTROL   a file re-read on every request: write
#                                                         `MODE [delay=SECONDS] [expire-tokens=N]`,
#                                                         MODE v2-only | v1 | refuse | down
#                                                         (see the emulator's header); replace it
#                                                         atomically (an empty read keeps the old mode)
#                            FLOTILLA_TEST_IMDS_LOG       one line per request: mode, path, node, status
#   stack_imds_mode LINE...  write LINE into the control file atomically, e.g. `stack_imds_mode v1`
#
# The emulator answers for the live instance whose private IP is the node address of the SSH
# session the request comes from; it reads the emulator coordinates from the file nodes.sh
# writes ($STACK_DIR/nodes/aws.json, so stack_nodes_write_aws_conf switches it too). It runs as
# root (sudo -n otherwise): it reads other processes' /proc/PID/fd and environ.

_imds_sudo=""
[ "$(id -u)" -eq 0 ] || _imds_sudo="sudo -n"

stack_imds_mode() {
  local tmp
  tmp=$(mktemp "$STACK_DIR/imds/.control.XXXXXX")
  printf '%s\n' "$*" >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$FLOTILLA_TEST_IMDS_CONTROL"
}

stack_start_imds() {
  local dir="$STACK_DIR/imds" port endpoint pid py
  [ -f "$STACK_DIR/nodes/aws.json" ] || stack_nodes_write_aws_conf || return 1
  mkdir -p "$dir"
  export FLOTILLA_TEST_IMDS_CONTROL="$dir/control"
  export FLOTILLA_TEST_IMDS_LOG="$dir/requests.log"
  stack_imds_mode v2-only
  : >"$FLOTILLA_TEST_IMDS_LOG"
  # The system interpreter when there is one: the emulator needs only the standard library.
  py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  port=$(stack_free_port)
  endpoint="http://127.0.0.1:$port"
  $_imds_sudo "$py" "$FLOTILLA_ROOT/scripts/fixtures/imds-emulator.py" --port "$port" \
    --control "$FLOTILLA_TEST_IMDS_CONTROL" --log "$FLOTILLA_TEST_IMDS_LOG" \
    --aws-conf "$STACK_DIR/nodes/aws.json" >"$dir/emulator.out" 2>&1 &
  pid=$!
  stack_on_exit "$_imds_sudo kill $pid"
  stack_prioritise "$pid"  # as the EC2 emulator (moto.sh): it stands for a service of AWS
  # Any HTTP answer will do (401 without a token): the server is up.
  stack_wait_for "the IMDS emulator on port $port" 10 curl -s --noproxy '*' -o /dev/null "$endpoint/latest/meta-data/" \
    || { cat "$dir/emulator.out" >&2; return 1; }
  export FLOTILLA_TEST_IMDS_ENDPOINT="$endpoint"
  stack_log "IMDS emulator on $endpoint (mode v2-only; control $FLOTILLA_TEST_IMDS_CONTROL, log $FLOTILLA_TEST_IMDS_LOG)"
}
