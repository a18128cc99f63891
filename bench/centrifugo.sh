#!/usr/bin/env bash
# Centrifugo v6, the server bench's chat mode compares imgate with
# (bench chat -proto centrifugo). Sourced by the bench scripts, as
# gateway.sh is for imgate: one server at a time on the benchmark address,
# started with a fresh config in a temporary directory and stopped on exit.
#
#   cf_build     # builds Centrifugo once into CF_CACHE; sets cf_bin
#   cf_start     # cf_build, then starts it and waits for its port; exits the script if it never opens
#   cf_stop
#   cf_ws        # the address for bench's -ws
#
# Run directly, it builds and serves in the foreground, for manual runs:
#   bench/centrifugo.sh build       # prints the binary's path
#   bench/centrifugo.sh run         # Ctrl-C stops it
#   go run ./bench chat -proto centrifugo -ws 127.0.0.1:18000 -pairs 200 -rate 20000
#
# CF_VERSION (default v6.9.1) is the module version built; CF_CACHE
# (default ~/.cache/imgate-bench) keeps one binary a version; CF_ADDR
# (default 127.0.0.1:18000) is where it listens.
#
# The config is Centrifugo's defaults (memory engine, no history, nothing
# persisted, one command at a time per connection) but for:
#   http_server.address/port   the benchmark address, loopback only;
#   log.level error            as the gateway's -log-level error;
#   client.token.hmac_secret_key
#                              verifies the HS256 connection tokens bench
#                              makes (its -centrifugo-secret default);
#   channel.without_namespace.allow_subscribe_for_client,
#   channel.without_namespace.allow_publish_for_client
#                              let a connected client subscribe to its
#                              channel and publish into another's (no
#                              backend proxy, no subscription token);
#   usage_stats.disabled       no periodic usage report over the network.
# client.allowed_origins stays empty: bench sends no Origin header, which
# Centrifugo then accepts.
cf_version=${CF_VERSION:-v6.9.1}
cf_cache=${CF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imgate-bench}/centrifugo-$cf_version
cf_bin=$cf_cache/centrifugo
cf_ws=${CF_ADDR:-127.0.0.1:18000}
cf_secret=imgate-bench-centrifugo-hmac-secret # bench's -centrifugo-secret default
cf_srv="" cf_dir=""

cf_build() {
  [ -x "$cf_bin" ] && return
  echo "building Centrifugo $cf_version into $cf_cache (once)" >&2
  mkdir -p "$cf_cache"
  # The version is stamped as a release build would be: the connect reply
  # and `centrifugo version` then name it.
  (cd "$cf_cache" && GOBIN=$cf_cache go install \
    -ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=${cf_version#v}" \
    "github.com/centrifugal/centrifugo/v6@$cf_version")
}

# cf_config DIR writes DIR/config.json.
cf_config() {
  cat > "$1/config.json" <<EOF
{
  "http_server": {"address": "${cf_ws%:*}", "port": ${cf_ws##*:}},
  "log": {"level": "error"},
  "client": {"token": {"hmac_secret_key": "$cf_secret"}},
  "channel": {
    "without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_client": true}
  },
  "usage_stats": {"disabled": true}
}
EOF
}

cf_stop() {
  if [ -n "$cf_srv" ]; then kill "$cf_srv" 2>/dev/null || true; wait "$cf_srv" 2>/dev/null || true; cf_srv=""; fi
  if [ -n "$cf_dir" ]; then rm -rf "$cf_dir"; cf_dir=""; fi
}

cf_start() {
  cf_build
  cf_stop
  cf_dir=$(mktemp -d "${TMPDIR:-/tmp}/imgate-bench-centrifugo.XXXXXX")
  cf_config "$cf_dir"
  (cd "$cf_dir" && exec "$cf_bin" -c "$cf_dir/config.json") &
  cf_srv=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/${cf_ws%:*}/${cf_ws##*:}") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "centrifugo did not start" >&2
  exit 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case ${1:-} in
  build) cf_build && echo "$cf_bin" ;;
  run)
    trap cf_stop EXIT
    trap 'exit 130' INT TERM
    cf_start
    echo "Centrifugo $cf_version on $cf_ws (pid $cf_srv), config $cf_dir/config.json:" >&2
    cat "$cf_dir/config.json" >&2
    wait "$cf_srv"
    ;;
  *) echo "usage: bench/centrifugo.sh build|run" >&2; exit 2 ;;
  esac
elif declare -F gw_stop >/dev/null; then
  trap 'gw_stop; cf_stop' EXIT # sourced after gateway.sh: stop both
else
  trap cf_stop EXIT
fi
