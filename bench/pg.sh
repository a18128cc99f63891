#!/usr/bin/env bash
# A PostgreSQL server for benchmarks, in a directory of its own (default
# /tmp/imgate-bench-pg) on a loopback port (default 15432), with the
# server's defaults (fsync and synchronous_commit on), run as the postgres
# user when run as root.
#
#   bench/pg.sh start          # prints the URL of a fresh, empty database "imgate"
#   bench/pg.sh reset          # drops and recreates that database (between runs)
#   bench/pg.sh stop           # stops the server and removes its directory
set -euo pipefail
dir=${PGBENCH_DIR:-/tmp/imgate-bench-pg} port=${PGBENCH_PORT:-15432}
bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as=()
[ "$(id -u)" -ne 0 ] || as=(runuser -u postgres --)
url="postgres://postgres@127.0.0.1:$port/imgate?sslmode=disable"
psql() { "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
case ${1:-} in
start)
  mkdir -p "$dir"
  [ ${#as[@]} -eq 0 ] || chown postgres "$dir"
  [ -d "$dir/data" ] || "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=200" start >/dev/null
  psql -c "DROP DATABASE IF EXISTS imgate" -c "CREATE DATABASE imgate"
  echo "$url" ;;
reset)
  psql -c "DROP DATABASE IF EXISTS imgate WITH (FORCE)" -c "CREATE DATABASE imgate" ;;
stop)
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  rm -rf "$dir" ;;
*)
  echo "usage: $0 start|reset|stop" >&2; exit 2 ;;
esac
