/// The node scripts genconf copies to every node: `ip-detect`, `ip-detect-public` and
/// `fault-domain-detect`, reading the instance metadata service with IMDSv2 session tokens
/// (instances are launched with `HttpTokens=required`), retried, and failing with a message
/// that says what failed. One prelude (token, fetch with one re-token on 401, IPv4 check)
/// serves all three. The only thing a test changes is the metadata service's address.
public enum NodeScripts {
    public static let defaultEndpoint = "http://169.254.169.254"

    public static func ipDetect(endpoint: String) -> String {
        self.render(
            "ip-detect",
            header: #"""
                # DC/OS ip-detect for AWS EC2: prints this instance's private IPv4 address (meta-data/local-ipv4)
                # from the instance metadata service with an IMDSv2 session token, so it works on instances
                # launched with HttpTokens=required. On failure it exits 1 and says on stderr what failed.
                # Needs bash and curl. Flotilla renders only the IMDS line differently in its tests.
                """#, endpoint: endpoint,
            body: #"""
                token
                fetch /latest/meta-data/local-ipv4
                require_ipv4 local-ipv4
                printf '%s\n' "$BODY"
                """#)
    }

    public static func ipDetectPublic(endpoint: String) -> String {
        self.render(
            "ip-detect-public",
            header: #"""
                # DC/OS ip-detect-public for AWS EC2: prints this instance's public IPv4 address
                # (meta-data/public-ipv4) from the instance metadata service with an IMDSv2 session token; an
                # instance without one (404) gets its private address (local-ipv4) instead, since DC/OS needs an
                # address. On failure it exits 1 and says on stderr what failed.
                # Needs bash and curl. Flotilla renders only the IMDS line differently in its tests.
                """#, endpoint: endpoint,
            body: #"""
                token
                if fetch /latest/meta-data/public-ipv4 404-ok; then
                  require_ipv4 public-ipv4
                else
                  echo "$ME: this instance has no public IPv4 address (public-ipv4: HTTP 404); \#
                printing its private address" >&2
                  fetch /latest/meta-data/local-ipv4
                  require_ipv4 local-ipv4
                fi
                printf '%s\n' "$BODY"
                """#)
    }

    public static func faultDomainDetect(endpoint: String) -> String {
        self.render(
            "fault-domain-detect",
            header: #"""
                # DC/OS fault-domain-detect for AWS EC2: prints
                #   {"fault_domain":{"region":{"name":"aws/REGION"},"zone":{"name":"aws/AVAILABILITY-ZONE"}}}
                # from the instance identity document of the instance metadata service, read with an IMDSv2
                # session token. On failure it exits 1 and says on stderr what failed.
                # Needs bash, curl, sed and tr. Flotilla renders only the IMDS line differently in its tests.
                """#, endpoint: endpoint,
            body: #"""
                # field NAME: the string value of "NAME" in the document (IMDS prints `"name" : "value"`).
                field() {
                  printf '%s' "$DOC" | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"
                }

                token
                fetch /latest/dynamic/instance-identity/document
                DOC=$(printf '%s' "$BODY" | tr -d '\r\n')
                REGION=$(field region)
                ZONE=$(field availabilityZone)
                case $REGION in '' | *[!a-z0-9-]*) \#
                fail "no usable \"region\" in the instance identity document from $IMDS (got '$REGION')" ;; esac
                case $ZONE in '' | *[!a-z0-9-]*) \#
                fail "no usable \"availabilityZone\" in the instance identity document from $IMDS (got '$ZONE')" ;; esac
                case $ZONE in "$REGION"?*) ;; *) fail "availability zone '$ZONE' is not in region '$REGION' \#
                (instance identity document from $IMDS)" ;; esac
                # Names as DC/OS's own AWS fault-domain-detect prints them: aws/REGION, aws/ZONE.
                printf '{"fault_domain":{"region":{"name":"aws/%s"},"zone":{"name":"aws/%s"}}}\n' "$REGION" "$ZONE"
                """#)
    }

    private static func render(_ name: String, header: String, endpoint: String, body: String) -> String {
        "#!/usr/bin/env bash\n\(header)\nset -u\nIMDS=\(endpoint)\nME=\(name)\n\n\(self.prelude)\n\(body)\n"
    }

    private static let prelude = #"""
        TOKEN_TTL=21600  # seconds: the longest IMDS grants
        ATTEMPTS=3       # tries per request when there is no answer, a 429 or a 5xx (1 s, then 2 s apart)

        fail() { printf '%s: %s\n' "$ME" "$*" >&2; exit 1; }

        TMP=$(mktemp -d 2>/dev/null) || fail "cannot create a temporary directory"
        trap 'rm -rf "$TMP"' EXIT

        # request METHOD PATH HEADER: one try. Sets CODE (curl's exit status), STATUS (the HTTP status,
        # 000 without an answer), BODY and ERR (curl's own message). Never through a proxy.
        request() {
          rm -f "$TMP/body"
          STATUS=$(curl -sS --noproxy '*' --connect-timeout 2 --max-time 5 -X "$1" -H "$3" \
            -o "$TMP/body" -w '%{http_code}' "$IMDS$2" 2>"$TMP/err")
          CODE=$?
          BODY=$(cat "$TMP/body" 2>/dev/null)
          ERR=$(cat "$TMP/err")
          ERR=${ERR//$'\n'/ }
        }

        # call METHOD PATH HEADER: request, tried again while there is no answer, a 429 or a 5xx.
        call() {
          local attempt=1
          while :; do
            request "$@"
            case $CODE:$STATUS in
              0:429 | 0:5??) ;;
              0:*) return 0 ;;
            esac
            [ "$attempt" -ge "$ATTEMPTS" ] && return 0
            sleep "$attempt"
            attempt=$((attempt + 1))
          done
        }

        # what: the last answer in words, for a message.
        what() {
          if [ "$CODE" -eq 28 ]; then
            echo "no answer in time after $ATTEMPTS attempts ($ERR)"
          elif [ "$CODE" -ne 0 ]; then
            echo "no answer after $ATTEMPTS attempts ($ERR)"
          else
            echo "HTTP $STATUS${BODY:+: $(printf '%s' "$BODY" | tr '\r\n' '  ' | cut -c1-200)}"
          fi
        }

        # token: an IMDSv2 session token into TOKEN, or exit saying why.
        token() {
          call PUT /latest/api/token "X-aws-ec2-metadata-token-ttl-seconds: $TOKEN_TTL"
          if [ "$CODE" -eq 0 ] && [ "$STATUS" = 200 ] && [ -n "$BODY" ]; then
            TOKEN=$BODY
            return 0
          fi
          case $CODE:$STATUS in
            0:403) fail "the instance metadata service refused an IMDSv2 token (PUT $IMDS/latest/api/token): $(what);" \
              "it is turned off for this instance (HttpEndpoint=disabled) or the request is forbidden" ;;
            0:405) fail "PUT $IMDS/latest/api/token: $(what): this metadata service offers no IMDSv2 tokens" \
              "(IMDSv1-only is not supported)" ;;
            28:*) fail "no IMDSv2 token from $IMDS/latest/api/token: $(what); is the metadata service reachable" \
              "from here (a PUT answer is dropped beyond HttpPutResponseHopLimit hops, e.g. inside a container)?" ;;
            *) fail "no IMDSv2 token from $IMDS/latest/api/token: $(what)" ;;
          esac
        }

        # fetch PATH [404-ok]: GET PATH with the token; the answer in BODY. A 401 (token expired or
        # revoked) gets a new token once. Returns 1 on a 404 when 404-ok is given; exits on any other failure.
        fetch() {
          call GET "$1" "X-aws-ec2-metadata-token: $TOKEN"
          if [ "$CODE" -eq 0 ] && [ "$STATUS" = 401 ]; then
            token
            call GET "$1" "X-aws-ec2-metadata-token: $TOKEN"
            [ "$CODE" -eq 0 ] && [ "$STATUS" = 401 ] && fail "GET $IMDS$1 refused a fresh IMDSv2 token too: $(what)"
          fi
          [ "$CODE" -eq 0 ] && [ "$STATUS" = 200 ] && return 0
          [ "${2:-}" = 404-ok ] && [ "$CODE" -eq 0 ] && [ "$STATUS" = 404 ] && return 1
          fail "GET $IMDS$1: $(what)"
        }

        # require_ipv4 NAME: fails unless the answer just fetched (NAME, in $BODY) is an IPv4 address.
        require_ipv4() {
          is_ipv4 "$BODY" || fail "$1 from $IMDS is not an IPv4 address: '$(printf '%s' "$BODY" | cut -c1-100)'"
        }

        # is_ipv4 TEXT: a dotted-quad IPv4 address, no leading zeros.
        is_ipv4() {
          local IFS=. octet
          case $1 in '' | *[!0-9.]* | .* | *. | *..*) return 1 ;; esac
          # shellcheck disable=SC2086 # split on the dots; only digits and dots get here
          set -- $1
          [ $# -eq 4 ] || return 1
          for octet; do
            case $octet in 0 | [1-9] | [1-9][0-9] | 1[0-9][0-9] | 2[0-4][0-9] | 25[0-5]) ;; *) return 1 ;; esac
          done
        }
        """#
}
