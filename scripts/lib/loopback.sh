# Points Flotilla's binaries at the local stack: the emulator, the loopback network, the SSH
# nodes and the stub installer. Source after common.sh, moto.sh and nodes.sh, and call after
# stack_start_moto, stack_start_nodes, stack_start_installer and stack_start_imds.
#
#   stack_loopback_settings  finds or creates the loopback network in the emulator and writes the
#                            install settings for loopback nodes; exports FLOTILLA_TEST_SUBNET_ID
#                            (and the other zones' subnets and the test images: see
#                            scripts/fixtures/loopback-network.py) and FLOTILLA_TEST_INSTALL_SETTINGS
#                            (tests build the binaries' environment from these)
#   stack_loopback_env       also exports what `worker run`, `worker janitor` and `client` read:
#                            AWS_* (the emulator and its test user), FLOTILLA_SUBNET_ID, FLOTILLA_AMI,
#                            FLOTILLA_SSH_USER/PORT/ADDRESS, FLOTILLA_INSTALL_SETTINGS,
#                            FLOTILLA_INSTALLER_URL

stack_loopback_settings() {
  local network
  # FLOTILLA_TEST_SUBNET_ID (the SSH nodes' subnet), FLOTILLA_TEST_SUBNET_B_ID and _D_ID (other
  # zones), FLOTILLA_TEST_AMI (root /dev/sda1), FLOTILLA_TEST_AMI_XVDA, FLOTILLA_TEST_NO_VPC_REGION.
  network=$(python3 "$FLOTILLA_ROOT/scripts/fixtures/loopback-network.py" \
    "$FLOTILLA_TEST_AWS_ENDPOINT" "$FLOTILLA_TEST_AWS_REGION")
  eval "$network"
  export FLOTILLA_TEST_INSTALL_SETTINGS="$STACK_DIR/install-settings.json"
  # The production node scripts (ip-detect, …) and the production serve command (nginx through
  # the node's Docker, which the node model runs as an HTTP server on the node's address) run as
  # they are; only the metadata service's address is the emulator's (stack_start_imds).
  python3 - "$FLOTILLA_TEST_CHECK_RUNNER" "$FLOTILLA_TEST_IMDS_ENDPOINT" >"$FLOTILLA_TEST_INSTALL_SETTINGS" <<'PY'
import json, sys
print(json.dumps({
    "bootstrapPort": 8080,
    "checkRunnerPath": sys.argv[1],
    "metadataEndpoint": sys.argv[2],
    "commandTimeoutSeconds": 120, "downloadRetrySeconds": 30,
    "postflightTimeoutSeconds": 120, "postflightIntervalSeconds": 0.2,
    "instanceTimeoutSeconds": 120, "sshTimeoutSeconds": 300, "pollIntervalSeconds": 0.2,
}))
PY
  # What terminating an instance would stop: bootstrap servers on node addresses.
  local nodes
  nodes=$(python3 -c 'import ipaddress, sys
print("|".join(sorted({str(a).rsplit(".", 1)[0].replace(".", "\\.") + "\\." for a in ipaddress.ip_network(sys.argv[1])})))' \
    "${FLOTILLA_TEST_NODE_SUBNET:-127.0.1.0/24}")
  stack_on_exit "pkill -f 'http.server --bind ($nodes)'; rm -rf \"\$HOME\"/flotilla-bootstrap-* \"\$HOME\"/flotilla-steps"
}

stack_loopback_env() {
  stack_loopback_settings
  export AWS_REGION="$FLOTILLA_TEST_AWS_REGION"
  export AWS_ENDPOINT_URL="$FLOTILLA_TEST_AWS_ENDPOINT"
  export AWS_ACCESS_KEY_ID="$FLOTILLA_TEST_AWS_ACCESS_KEY_ID"
  export AWS_SECRET_ACCESS_KEY="$FLOTILLA_TEST_AWS_SECRET_ACCESS_KEY"
  # No shared config files from the machine: only what is set here.
  : >"$STACK_DIR/aws-config"
  export AWS_CONFIG_FILE="$STACK_DIR/aws-config" AWS_SHARED_CREDENTIALS_FILE="$STACK_DIR/aws-config"
  export FLOTILLA_SUBNET_ID="$FLOTILLA_TEST_SUBNET_ID"
  export FLOTILLA_AMI="$FLOTILLA_TEST_AMI"
  export FLOTILLA_SSH_USER="$FLOTILLA_TEST_SSH_USER" FLOTILLA_SSH_PORT="$FLOTILLA_TEST_SSH_PORT" FLOTILLA_SSH_ADDRESS=private
  export FLOTILLA_INSTALLER_URL="$FLOTILLA_TEST_INSTALLER_URL"
  export FLOTILLA_SSH_DIR=/tmp/flotilla-ssh
  export FLOTILLA_INSTALL_SETTINGS="$FLOTILLA_TEST_INSTALL_SETTINGS"
  # Each worker and janitor serves /metrics on a free loopback port (it logs which).
  export FLOTILLA_METRICS_ADDRESS=127.0.0.1:0 FLOTILLA_JANITOR_METRICS_ADDRESS=127.0.0.1:0
}
