# Helpers for scripts/bench: a results store, and one runner per measured system.
# Source after common.sh. Every measurement declares the cells it will fill before it
# runs (bench_expect), so a measurement that fails leaves a visible hole: the report
# prints "—" for it and the script exits non-zero.
#
#   bench_expect SECTION ROW COLUMN          a cell that must get a number
#   bench_cell SECTION ROW COLUMN VALUE      fill it (VALUE must be a number)
#   bench_ratio SECTION ROW COLUMN  NSECTION NROW NCOLUMN  DSECTION DROW DCOLUMN
#                                            a cell computed by the report: N / D
#   bench_raw NAME JSON                      keep a run's raw output in the JSON file
#   bench_note SECTION TEXT                  a line printed under the section's table
#   bench_json_get JSON KEY                  print one number of a JSON object
#   bench_psql DB SQL                        run SQL quietly in database DB

BENCH_CELLS="$STACK_DIR/bench-cells.jsonl"
: >"$BENCH_CELLS"

_BENCH_T0=${EPOCHREALTIME/./}
bench_log() {
  local now=${EPOCHREALTIME/./}
  printf '[bench %6.1fs] %s\n' "$(( (now - _BENCH_T0) / 100000 ))e-1" "$*" >&2
}

# One JSON object per line; the report parses (and so checks) every line.
_bench_emit() { printf '%s\n' "${1//$'\n'/ }" >>"$BENCH_CELLS"; }

# A JSON string literal for $1 (labels are ours: escape backslashes, quotes, tabs).
_bench_json_str() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  printf '"%s"' "$s"
}

bench_expect() {
  _bench_emit "{\"kind\": \"expect\", \"section\": $(_bench_json_str "$1"), \"row\": $(_bench_json_str "$2"), \"col\": $(_bench_json_str "$3")}"
}

bench_cell() {
  local value=$4
  if ! [[ "$value" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
    bench_log "not a number for $1 / $2 / $3: '$value'"
    return 1
  fi
  _bench_emit "{\"kind\": \"cell\", \"section\": $(_bench_json_str "$1"), \"row\": $(_bench_json_str "$2"), \"col\": $(_bench_json_str "$3"), \"value\": $value}"
}

bench_ratio() {
  _bench_emit "{\"kind\": \"ratio\", \"section\": $(_bench_json_str "$1"), \"row\": $(_bench_json_str "$2"), \"col\": $(_bench_json_str "$3"),
    \"num\": [$(_bench_json_str "$4"), $(_bench_json_str "$5"), $(_bench_json_str "$6")],
    \"den\": [$(_bench_json_str "$7"), $(_bench_json_str "$8"), $(_bench_json_str "$9")]}"
}

bench_raw() {
  _bench_emit "{\"kind\": \"raw\", \"name\": $(_bench_json_str "$1"), \"data\": $2}"
}

bench_note() {
  _bench_emit "{\"kind\": \"note\", \"section\": $(_bench_json_str "$1"), \"text\": $(_bench_json_str "$2")}"
}

bench_json_get() {
  python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

bench_psql() {
  psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c "$2" >/dev/null
}

# The URL of database DB on the stack's server.
bench_db_url() { echo "postgres://$PGUSER@$PGHOST:$PGPORT/$1"; }

# Runs a command with a time limit; its stdout is the result, its stderr goes to the
# log file named after the run. Prints the last line of stdout (the JSON object).
bench_run() {
  local name=$1 limit=$2; shift 2
  local out="$STACK_DIR/run-$name.out" err="$STACK_DIR/run-$name.err"
  if ! timeout --kill-after=5 "$limit" "$@" >"$out" 2>"$err"; then
    bench_log "$name failed (exit or timeout after ${limit}s); its stderr:"
    tail -n 20 "$err" >&2 || true
    return 1
  fi
  tail -n 1 "$out"
}
