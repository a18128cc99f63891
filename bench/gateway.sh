# Sourced by the bench scripts: one gateway at a time on the benchmark
# addresses, started on a fresh data directory and stopped on exit.
#
#   gw_start BINARY DATADIR [FLAG...]   # waits for its HTTP port; exits the script if it never opens
#   gw_stop
#
# GW_WS and GW_HTTP (default 127.0.0.1:18889 and 127.0.0.1:18082) move it.
ws=${GW_WS:-127.0.0.1:18889} http=${GW_HTTP:-127.0.0.1:18082}
srv=""
gw_stop() { if [ -n "$srv" ]; then kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; srv=""; fi; }
trap gw_stop EXIT
gw_start() {
  local bin=$1 data=$2
  shift 2
  gw_stop
  rm -rf "$data"
  "$bin" -data "$data" "$@" -ws-addr $ws -http-addr $http -log-level error -rate-limit -1 &
  srv=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/${http%:*}/${http##*:}") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "gateway did not start" >&2
  exit 1
}
