#!/usr/bin/env bash
# Runs every BENCHMARKS.md row RUNS times (default 3), each against a fresh
# gateway with a fresh data directory, and prints the medians.
#
#   bench/run-all.sh [OUTDIR]        # RUNS=3 MODES="chat chat20k group offline connect http healthz"
#
# Needs only Go. Results stay in OUTDIR (default /tmp/imgate-bench) as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/imgate-bench}
runs=${RUNS:-3}
modes=${MODES:-"chat chat20k group offline connect http healthz"}
mkdir -p "$out"
go build -o "$out/imgate" . && go build -o "$out/bench" ./bench

# shellcheck source=bench/gateway.sh
. bench/gateway.sh
start() { gw_start "$out/imgate" "$out/data"; }

args() {
  case $1 in
  chat) echo "chat -pairs 200 -inflight 16 -duration 5s" ;;
  chat20k) echo "chat -pairs 200 -rate 20000 -duration 5s" ;;
  group) echo "group -members 500 -inflight 16 -duration 5s" ;;
  offline) echo "offline -pairs 10 -messages 1000" ;;
  connect) echo "connect -conns 19500 -procs 2 -duration 2s -server-pid" ;;
  http) echo "http -concurrency 64 -duration 5s" ;;
  healthz) echo "http -healthz -concurrency 64 -duration 5s" ;;
  esac
}

for m in $modes; do
  files=()
  for i in $(seq "$runs"); do
    start
    a=$(args "$m")
    [ "$m" = connect ] && a="$a $srv"
    echo "== $m run $i: bench $a" >&2
    # shellcheck disable=SC2086
    "$out/bench" $a -ws $ws -http $http -json > "$out/$m-$i.json" || echo "run had errors: $out/$m-$i.json" >&2
    files+=("$out/$m-$i.json")
  done
  echo "# $m: bench $(args "$m")"
  "$out/bench" median "${files[@]}"
done
