#!/usr/bin/env bash
# scripts/run.sh -- `make run`: a local PostgreSQL 15 with ferry and the demo schema.
#
#   scripts/run.sh start   install the extension, start (or reuse) the server in .run/pg,
#                          create database ferry_demo, load examples/demo.sql, start ferryd
#                          (gateway) on 127.0.0.1:7070 and print a demo token
#   scripts/run.sh stop    stop ferryd and that server; their data stays in .run/
#   scripts/run.sh clean   stop them and remove .run/pg and .run/ferryd
#
# Environment:
#   FERRY_DATABASE_URL   load the demo into this database instead (no local server is started)
#   FERRY_RUN_DIR        where the local server lives (default .run/pg in the repository)
#   FERRY_SKIP_DEPS=1    do not run `make deps`
#   FERRY_LISTEN         ferryd's address (default 127.0.0.1:7070)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# PostgreSQL 15's own psql, pg_dump, pgbench... (not another version through pg_wrapper).
export PATH="${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"
rundir=${FERRY_RUN_DIR:-$root/.run/pg}
gwdir=$root/.run/ferryd
db=ferry_demo
listen=${FERRY_LISTEN:-127.0.0.1:7070}

# ferryd_running: 0 when the ferryd started by `make run` is alive.
ferryd_running() {
  [ -f "$gwdir/pid" ] && kill -0 "$(cat "$gwdir/pid")" 2>/dev/null
}

# start_ferryd URL: starts ferryd against URL unless it runs; waits for /healthz.
start_ferryd() {
  local url=$1 port=${listen##*:} host=${listen%:*} i
  mkdir -p "$gwdir"
  if [ ! -s "$gwdir/jwt-secret" ]; then
    (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$gwdir/jwt-secret")
  fi
  if ! ferryd_running; then
    FERRY_DATABASE_URL=$url gateway/ferryd --listen="$listen" --data-dir="$gwdir/data" \
      --jwt-secret-file="$gwdir/jwt-secret" >>"$gwdir/ferryd.log" 2>&1 &
    echo $! >"$gwdir/pid"
  fi
  for i in $(seq 1 100); do
    if { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
      printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
      if head -n1 <&3 | grep -q ' 200'; then exec 3<&-; return 0; fi
      exec 3<&-
    fi
    ferryd_running || break
    sleep 0.1
  done
  echo "run: ferryd did not start; see $gwdir/ferryd.log:" >&2
  tail -n 20 "$gwdir/ferryd.log" >&2
  exit 1
}

stop_ferryd() {
  if ferryd_running; then
    kill "$(cat "$gwdir/pid")"
    echo "stopped ferryd"
  fi
  rm -f "$gwdir/pid"
}

start() {
  local url external=${FERRY_DATABASE_URL:-}
  if [ "${FERRY_SKIP_DEPS:-0}" != 1 ]; then
    make --no-print-directory deps
  fi
  make --no-print-directory install gateway

  if [ -n "$external" ]; then
    url=$external
  else
    local cluster_env
    if ! cluster_env=$(test/pgcluster.sh start "$rundir"); then
      echo "run: could not start PostgreSQL in $rundir (set FERRY_RUN_DIR to use another directory)" >&2
      exit 1
    fi
    eval "$cluster_env"
    if [ -z "$(psql -X -At -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db"
    fi
    url="host=$PGHOST port=$PGPORT user=postgres dbname=$db"
  fi

  PGOPTIONS='-c client_min_messages=warning' \
    psql -X -q -v ON_ERROR_STOP=1 -d "$url" -f examples/demo.sql >/dev/null
  start_ferryd "$url"
  token=$(FERRY_JWT_SECRET=$(cat "$gwdir/jwt-secret") gateway/ferryd --make-token bob:acme --token-ttl=86400)

  cat <<TXT

ferry is running: the demo schema (examples/demo.sql) is loaded.

  Connect:   psql '$url'
  Try:       SELECT workspace_id, title, owner_id, visibility, ferry_version FROM todos;
             -- what bob may see in workspace acme (not alice's private todo):
             SELECT r->>'title' AS title, r->>'owner_id' AS owner
               FROM jsonb_array_elements(ferry.changes_since('todos', NULL,
                      '{"sub": "bob", "tenants": ["acme"]}')->'rows') r;

  Gateway:   ferryd on ws://$listen/v1/ws (subprotocol ferry.v1), http://$listen/healthz,
             http://$listen/metrics; log in $gwdir/ferryd.log
  Token:     a demo token for user bob in workspace acme, valid 24 h:
             $token

TXT
  if [ -z "$external" ]; then
    cat <<TXT
  Stop:      make run-stop     (data stays in .run/; make run starts it again)
  Remove:    make run-clean
TXT
  else
    cat <<TXT
  Stop:      make run-stop     (stops ferryd)
TXT
  fi
}

case "${1:-start}" in
  start) start ;;
  stop)
    stop_ferryd
    if [ -d "$rundir" ]; then
      test/pgcluster.sh halt "$rundir"
      echo "stopped PostgreSQL in $rundir"
    fi
    ;;
  clean)
    stop_ferryd
    rm -rf "$gwdir"
    if [ -d "$rundir" ]; then
      test/pgcluster.sh stop "$rundir"
    fi
    echo "removed $rundir and $gwdir"
    ;;
  *) echo "usage: $0 [start|stop|clean]" >&2; exit 2 ;;
esac
