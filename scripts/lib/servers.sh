# Throwaway database servers for tests and benchmarks; source it, then call ensure_postgres /
# ensure_clickhouse and `trap stop_servers EXIT`. Each ensure_* exports the admin URL the tests
# read (COMPOSITE_STORE_TEST_POSTGRES / COMPOSITE_STORE_TEST_CLICKHOUSE, and the same ClickHouse's
# HTTP URL as COMPOSITE_STORE_TEST_CLICKHOUSE_HTTP) or returns 1 with
# SKIP_REASON set. Servers started here listen on 127.0.0.1 only and keep data in a temp dir.

SKIP_REASON=""
_STOP_COMMANDS=()

stop_servers() {
  local cmd
  for cmd in "${_STOP_COMMANDS[@]}"; do eval "$cmd" >/dev/null 2>&1 || true; done
  _STOP_COMMANDS=()
}

_as_postgres() {  # initdb/pg_ctl refuse to run as root
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

_pg_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] && echo "$found"
}

ensure_postgres() {
  if [ -n "${COMPOSITE_STORE_TEST_POSTGRES:-}" ]; then return 0; fi
  # 1. a server already running on the usual port (trust auth, user postgres)
  if command -v psql >/dev/null && psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    export COMPOSITE_STORE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:5432/postgres"
    return 0
  fi
  # 2. a throwaway cluster of our own
  local bin dir port=54329
  bin=$(_pg_bin || true)
  if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test: installing PostgreSQL (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null 2>&1 || true
    bin=$(_pg_bin || true)
  fi
  if [ -z "$bin" ]; then SKIP_REASON="no PostgreSQL server binaries (initdb) found"; return 1; fi
  dir=$(mktemp -d /tmp/cs-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if ! _as_postgres "'$bin/initdb' -D '$dir/data' -A trust -U postgres" >"$dir.log" 2>&1; then
    SKIP_REASON="initdb failed (see $dir.log)"; return 1
  fi
  if ! _as_postgres "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off\" start" >>"$dir.log" 2>&1; then
    SKIP_REASON="pg_ctl start failed (see $dir/server.log)"; return 1
  fi
  _STOP_COMMANDS+=("_as_postgres \"'$bin/pg_ctl' -D '$dir/data' -m fast -w stop\"; rm -rf '$dir' '$dir.log'")
  export COMPOSITE_STORE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/postgres"
}

_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ClickHouse writes a directory of files for every INSERT and deletes old ones after merges.
# On ext4 without a journal (this project's CI machines) that churn slows file creation by
# itself: after a few minutes 75% of the server's time went to the kernel's inode
# allocator (recently_deleted, seen with perf) and inserts ran 7x slower. A memory
# filesystem has no such effect, and this server's data is thrown away anyway.
_throwaway_root() {  # /dev/shm when it is writable and has 1 GB free (a container's may not)
  local free_kb
  free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
  if [ -w /dev/shm ] && [ "${free_kb:-0}" -ge 1048576 ]; then echo /dev/shm; else echo /tmp; fi
}

ensure_clickhouse() {
  if [ -n "${COMPOSITE_STORE_TEST_CLICKHOUSE:-}" ]; then return 0; fi
  local server tcp http dir pid i
  tcp=$(_free_port) http=$(_free_port)
  server=$(command -v clickhouse-server || true)
  if [ -z "$server" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test: installing clickhouse-server (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server; } >/dev/null 2>&1 || true
    server=$(command -v clickhouse-server || true)
  fi
  if [ -z "$server" ]; then SKIP_REASON="no clickhouse-server binary (Debian package clickhouse-server)"; return 1; fi
  dir=$(mktemp -d "$(_throwaway_root)/cs-ch.XXXXXX")
  mkdir -p "$dir"/{data,tmp,log,user_files,format_schemas}
  sed "s#@CHDIR@#$dir#g; s#@TCP_PORT@#$tcp#; s#@HTTP_PORT@#$http#" scripts/clickhouse/config.xml >"$dir/config.xml"
  cp scripts/clickhouse/users.xml "$dir/users.xml"
  ( cd "$dir" && exec "$server" --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 ) &
  pid=$!
  _STOP_COMMANDS+=("kill -TERM $pid; for _ in \$(seq 1 150); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; kill -KILL $pid 2>/dev/null; rm -rf '$dir'")
  for i in $(seq 1 300); do  # up to 30 s
    if ! kill -0 "$pid" 2>/dev/null; then
      SKIP_REASON="clickhouse-server exited at start: $(tail -n 3 "$dir"/log/*.log 2>/dev/null | tr '\n' ' ')"; return 1
    fi
    if python - "$tcp" <<'PY' >/dev/null 2>&1
import sys
from clickhouse_driver import Client
Client("127.0.0.1", port=int(sys.argv[1]), connect_timeout=1).execute("SELECT 1")
PY
    then
      export COMPOSITE_STORE_TEST_CLICKHOUSE="clickhouse://default@127.0.0.1:$tcp/default"
      export COMPOSITE_STORE_TEST_CLICKHOUSE_HTTP="clickhouse+http://default@127.0.0.1:$http/default"
      return 0
    fi
    sleep 0.1
  done
  SKIP_REASON="clickhouse-server did not answer within 30 s (logs in $dir/log)"
  return 1
}
