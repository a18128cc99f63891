#!/usr/bin/env bash
# Compares two gateway binaries on one bench row: RUNS interleaved runs each
# (A, B, A, B, …), every run on a fresh gateway with a fresh data directory,
# then the medians of each side (bench median), from which the ratio B/A of
# the medians is read.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [OUTDIR]   # RUNS=5 ARGS="chat -pairs 200 -inflight 16 -duration 5s"
#
# A side may be the word centrifugo instead of a binary: Centrifugo v6 in
# memory (bench/centrifugo.sh builds it once and configures it), loaded by
# the same chat row over its client protocol (bench chat -proto
# centrifugo), e.g. Centrifugo against imgate, paced and closed loop:
#   ARGS="chat -pairs 200 -rate 20000 -duration 10s" bench/ab.sh centrifugo ./imgate
#   ARGS="chat -pairs 200 -inflight 16 -duration 10s" bench/ab.sh centrifugo ./imgate
#
# ARGS_B (default ARGS) gives side B other load-generator arguments: the
# same binary twice with ARGS_B="… -ack" measures what a client option costs.
#
# STORE_A / STORE_B (default empty: Pebble in a fresh directory) give a
# side's -store; a postgres:// URL is reset to an empty database before
# each of its runs with bench/pg.sh reset (start the server with
# bench/pg.sh start). Pebble against PostgreSQL with one binary:
#   STORE_B=$(bench/pg.sh start) bench/ab.sh ./imgate ./imgate
#
# Build OLD_BINARY from an earlier commit, e.g.:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && go build -o /tmp/imgate-old .)
# The load generator is this tree's bench. Results stay in OUTDIR as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 out=${3:-/tmp/imgate-ab}
runs=${RUNS:-5}
args=${ARGS:-"chat -pairs 200 -inflight 16 -duration 5s"}
args_b=${ARGS_B:-$args}
mkdir -p "$out"
go build -o "$out/bench" ./bench

# shellcheck source=bench/gateway.sh
. bench/gateway.sh
# shellcheck source=bench/centrifugo.sh
. bench/centrifugo.sh
for side in "$a" "$b"; do
  if [ "$side" = centrifugo ]; then cf_build; fi
done
if { [ "$a" = centrifugo ] && [ -n "${STORE_A:-}" ]; } || { [ "$b" = centrifugo ] && [ -n "${STORE_B:-}" ]; }; then
  echo "centrifugo runs in memory: no STORE_A/STORE_B for it" >&2
  exit 2
fi
start() {
  if [ "$1" = centrifugo ]; then cf_start; return; fi
  local store=()
  if [ -n "$2" ]; then bench/pg.sh reset; store=(-store "$2"); fi
  gw_start "$1" "$out/data" "${store[@]}"
}
# target prints bench's flags for the side run by binary $1.
target() {
  if [ "$1" = centrifugo ]; then echo "-proto centrifugo -centrifugo-secret $cf_secret -ws $cf_ws"
  else echo "-ws $ws -http $http"; fi
}
stop() { gw_stop; cf_stop; }
name() {
  if [ "$1" = centrifugo ]; then echo "centrifugo $cf_version (memory)"
  else echo "$1 ${2:-pebble}"; fi
}

fa=() fb=()
for i in $(seq "$runs"); do
  for side in a b; do
    bin=$a run_args=$args store=${STORE_A:-}
    if [ $side = b ]; then bin=$b run_args=$args_b store=${STORE_B:-}; fi
    start "$bin" "$store"
    f="$out/$side-$i.json"
    # shellcheck disable=SC2086,SC2046
    "$out/bench" $run_args $(target "$bin") -json > "$f" || echo "run had errors: $f" >&2
    stalls=""
    if [ "$bin" != centrifugo ]; then
      # The gateway's write stalls in the run (none: an older gateway).
      stalls=$(curl -s "http://$http/metrics" | grep '^imgate_storage_write_stall' | tr '\n' ' ' || true)
    fi
    stop
    if [ $side = a ]; then fa+=("$f"); else fb+=("$f"); fi
    echo "run $i $side: $f $stalls" >&2
  done
done
echo "# A = $(name "$a" "${STORE_A:-}"): $args"
"$out/bench" median "${fa[@]}"
echo "# B = $(name "$b" "${STORE_B:-}"): $args_b"
"$out/bench" median "${fb[@]}"
