#!/usr/bin/env bash
# One gateway against a three-node cluster, both on PostgreSQL, on one
# bench row: RUNS interleaved runs each (1, 3, 1, 3, …), every run on an
# empty database, then the medians of each side (bench median).
#
#   STORE=$(bench/pg.sh start) bench/cluster-ab.sh BINARY [OUTDIR]
#   # RUNS=5 ARGS="chat -pairs 200 -inflight 16 -duration 5s"
#
# The cluster side runs three NATS servers routed to each other (built
# from the nats-server Go module) and three gateways; bench spreads its
# clients over the three (-ws, -http lists), the two sides of every pair
# on different nodes, so every message crosses the bus.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 out=${2:-/tmp/imgate-cluster-ab}
runs=${RUNS:-5}
args=${ARGS:-"chat -pairs 200 -inflight 16 -duration 5s"}
store=${STORE:?set STORE to a postgres:// URL (bench/pg.sh start)}
mkdir -p "$out"
go build -o "$out/bench" ./bench
[ -x "$out/nats-server" ] || GOBIN=$out go install github.com/nats-io/nats-server/v2@v2.15.2

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
trap stop EXIT
waitport() {
  for _ in $(seq 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}
gateway() { # index, extra flags…
  local i=$1; shift
  "$bin" -store "$store" -ws-addr 127.0.0.1:1889$i -http-addr 127.0.0.1:1808$i -log-level error -rate-limit -1 "$@" &
  pids+=($!)
  waitport 1808$i
}
start() { # nodes
  stop
  bench/pg.sh reset
  if [ "$1" = 1 ]; then gateway 1; return; fi
  local nats=""
  for i in 0 1 2; do
    "$out/nats-server" -a 127.0.0.1 -p $((14222+i)) --cluster nats://127.0.0.1:$((16222+i)) --cluster_name bench \
      --routes nats://127.0.0.1:16222,nats://127.0.0.1:16223,nats://127.0.0.1:16224 >/dev/null 2>&1 &
    pids+=($!)
    nats+=${nats:+,}nats://127.0.0.1:$((14222+i))
  done
  for i in 0 1 2; do waitport $((14222+i)); done
  for i in 1 2 3; do gateway $i -nats "$nats"; done
  sleep 1 # the gateways meet on the bus (their first presence exchange)
}

f1=() f3=()
for r in $(seq "$runs"); do
  for n in 1 3; do
    start $n
    f="$out/n$n-$r.json"
    if [ $n = 1 ]; then targets=(-ws 127.0.0.1:18891 -http 127.0.0.1:18081)
    else targets=(-ws 127.0.0.1:18891,127.0.0.1:18892,127.0.0.1:18893 -http 127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083); fi
    # shellcheck disable=SC2086
    "$out/bench" $args "${targets[@]}" -json > "$f" || echo "run had errors: $f" >&2
    stop
    if [ $n = 1 ]; then f1+=("$f"); else f3+=("$f"); fi
    echo "run $r, $n node(s): $f" >&2
  done
done
echo "# one gateway on PostgreSQL: $args"
"$out/bench" median "${f1[@]}"
echo "# three gateways on NATS and PostgreSQL, pairs across nodes: $args"
"$out/bench" median "${f3[@]}"
