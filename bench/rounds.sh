#!/usr/bin/env bash
# Runs one bench row ROUNDS times in a row on the same gateway (fresh data
# directory at the start only), REPS times over: what a server that has
# already taken load does (compaction debt), e.g. a second 10 s round
# against the first, or a 60 s run against a 10 s one. Prints each round's
# acks/s and ack p99, then the medians by round (bench median).
#
#   bench/rounds.sh BINARY [OUTDIR]   # REPS=3 ROUNDS=2 ARGS="chat -pairs 200 -inflight 16 -duration 10s"
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 out=${2:-/tmp/imgate-rounds}
reps=${REPS:-3} rounds=${ROUNDS:-2}
args=${ARGS:-"chat -pairs 200 -inflight 16 -duration 10s"}
mkdir -p "$out"
go build -o "$out/bench" ./bench
# shellcheck source=bench/gateway.sh
. bench/gateway.sh
for rep in $(seq "$reps"); do
  gw_start "$bin" "$out/data"
  for round in $(seq "$rounds"); do
    f="$out/rep$rep-round$round.json"
    # shellcheck disable=SC2086
    "$out/bench" $args -ws $ws -http $http -json > "$f" || echo "run had errors: $f" >&2
    echo "rep $rep round $round: $f" >&2
  done
done
gw_stop
for round in $(seq "$rounds"); do
  echo "# round $round of $rounds on one gateway, $reps gateways: $args"
  "$out/bench" median "$out"/rep*-round"$round".json
done
