#!/usr/bin/env bash
# scripts/run.sh -- `make run`: a local PostgreSQL 15 with ferry and the demo schema.
#
#   scripts/run.sh start   install the extension, start (or reuse) the server in .run/pg,
#                          create database ferry_demo, load examples/demo.sql
#   scripts/run.sh stop    stop that server; its data stays in .run/pg
#   scripts/run.sh clean   stop it and remove .run/pg
#
# Environment:
#   FERRY_DATABASE_URL   load the demo into this database instead (no local server is started)
#   FERRY_RUN_DIR        where the local server lives (default .run/pg in the repository)
#   FERRY_SKIP_DEPS=1    do not run `make deps`
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# PostgreSQL 15's own psql, pg_dump, pgbench... (not another version through pg_wrapper).
export PATH="${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"
rundir=${FERRY_RUN_DIR:-$root/.run/pg}
db=ferry_demo

start() {
  local url external=${FERRY_DATABASE_URL:-}
  if [ "${FERRY_SKIP_DEPS:-0}" != 1 ]; then
    make --no-print-directory deps
  fi
  make --no-print-directory install

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

  cat <<TXT

ferry is running: the demo schema (examples/demo.sql) is loaded.

  Connect:   psql '$url'
  Try:       SELECT workspace_id, title, owner_id, visibility, ferry_version FROM todos;
             -- what bob may see in workspace acme (not alice's private todo):
             SELECT r->>'title' AS title, r->>'owner_id' AS owner
               FROM jsonb_array_elements(ferry.changes_since('todos', NULL,
                      '{"sub": "bob", "tenants": ["acme"]}')->'rows') r;

TXT
  if [ -z "$external" ]; then
    cat <<TXT
  Stop:      make run-stop     (data stays in $rundir; make run starts it again)
  Remove:    make run-clean
TXT
  fi
}

case "${1:-start}" in
  start) start ;;
  stop)
    test/pgcluster.sh halt "$rundir"
    echo "stopped PostgreSQL in $rundir"
    ;;
  clean)
    test/pgcluster.sh stop "$rundir"
    echo "removed $rundir"
    ;;
  *) echo "usage: $0 [start|stop|clean]" >&2; exit 2 ;;
esac
