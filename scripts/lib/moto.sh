# The EC2/STS emulator for tests and demos. Source after scripts/lib/common.sh.
#
#   stack_start_moto   start moto_server on a free 127.0.0.1 port with SigV4 signature
#                      checking on, create an IAM user (and a role to assume) allowed
#                      ec2:*, sts:*, iam:*, and export:
#                        FLOTILLA_TEST_AWS_ENDPOINT           http://127.0.0.1:PORT
#                        FLOTILLA_TEST_AWS_ACCESS_KEY_ID      the user's access key
#                        FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY  its secret
#                        FLOTILLA_TEST_AWS_REGION             us-west-2
#                        FLOTILLA_TEST_AWS_ROLE_ARN           a role the user may assume
#                        FLOTILLA_TEST_IMAGE_CATALOGUE        JSON tests write: imdsSupport and
#                                                             enaSupport per image (moto-server.py)
#
# Never call /moto-api/reset on this server: it would delete the IAM user the tests sign with.

stack_start_moto() {
  local port endpoint log pid exports
  command -v moto_server >/dev/null 2>&1 || { stack_log "moto_server is not installed (run stack_install)"; return 1; }
  port=$(stack_free_port)
  endpoint="http://127.0.0.1:$port"
  log="$STACK_DIR/moto.log"
  # Started without INITIAL_NO_AUTH_ACTION_COUNT: every call is free until the IAM
  # identities exist; /moto-api/reset-auth with 0 then turns checking on for every call.
  # moto_server itself, with EC2 tag look-ups indexed (same answers; see moto-server.py).
  export FLOTILLA_TEST_IMAGE_CATALOGUE="$STACK_DIR/image-catalogue.json"
  python3 "$FLOTILLA_ROOT/scripts/fixtures/moto-server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  pid=$!
  stack_on_exit "kill $pid"
  # The emulator stands for AWS, which a busy test machine does not slow down: it runs ahead of
  # the tests' own processes (a full run keeps the 2 cores at a load of 15 to 20, and the
  # emulator's answers took longer than its clients' 10 s). Root only; elsewhere it stays as is.
  stack_prioritise "$pid"
  stack_wait_for "moto_server on port $port" 30 \
    curl -sf -o /dev/null "$endpoint/moto-api/data.json" || { cat "$log" >&2; return 1; }

  exports=$(python3 "$FLOTILLA_ROOT/scripts/fixtures/moto-setup.py" "$endpoint") \
    || { stack_log "creating the moto IAM user failed"; cat "$log" >&2; return 1; }
  eval "$exports"
  curl -sf -o /dev/null -X POST -H 'Content-Type: text/plain' --data 0 "$endpoint/moto-api/reset-auth" \
    || { stack_log "turning on moto signature checking failed"; return 1; }

  export FLOTILLA_TEST_AWS_ENDPOINT="$endpoint"
  export FLOTILLA_TEST_AWS_REGION=us-west-2
  export FLOTILLA_TEST_AWS_ACCESS_KEY_ID FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY FLOTILLA_TEST_AWS_ROLE_ARN
  stack_log "moto_server on $endpoint (signature checking on, log $log)"
}
