#!/usr/bin/env bash
# test/http/run.sh -- ferryd's HTTP API end to end: a real ferryd on the harness's cluster,
# the official @electric-sql/client under Node, raw HTTP requests, nginx's cache in front.
#
# Run by test/run.sh (suite "http"), which sets PG* and FERRY_DATABASE_URL. Installs
# the pinned client from the npm registry into build/test/http; exits 77 (skipped) when
# node, npm or the registry is not there, so a machine without them reports a skip, not
# a pass. Each *_test.mjs prints TAP and runs under prove.
set -uo pipefail
cd "${FERRY_ROOT:-$(dirname "$0")/../..}"

work=build/test/http
db=ferry_http
slot=ferry_http_test
secret=http-test-secret-http-test-secret-0123456789
pid=

for c in node npm prove psql curl; do
  command -v "$c" >/dev/null || { echo "# skip: $c is not installed"; exit 77; }
done
mkdir -p "$work"
cp test/http/package.json test/http/*.mjs "$work/"
if [ ! -d "$work/node_modules/@electric-sql/client" ] ||
   ! grep -q "\"version\": \"$(sed -n 's/.*"@electric-sql\/client": "\(.*\)".*/\1/p' test/http/package.json)\"" \
     "$work/node_modules/@electric-sql/client/package.json"; then
  if ! (cd "$work" && timeout 180 npm install --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
    echo "# skip: cannot install @electric-sql/client from the npm registry:"
    sed 's/^/#   /' "$work/npm.log" | tail -5
    exit 77
  fi
fi

nginx_pid=
cleanup() {
  if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
    kill -TERM "$nginx_pid"
    wait "$nginx_pid" 2>/dev/null
  fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null
  fi
  psql -X -q -d "$db" -c "SELECT pg_drop_replication_slot('$slot') FROM pg_replication_slots WHERE slot_name = '$slot'" \
    >/dev/null 2>&1
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
}
trap cleanup EXIT

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null || exit 1
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f test/http/schema.sql >/dev/null || exit 1

rm -rf "$work/data" "$work/port"
# FERRY_HTTP_FERRYD: another ferryd binary to test (e.g. one built with sanitizers)
FERRY_JWT_SECRET=$secret "${FERRY_HTTP_FERRYD:-gateway/ferryd}" --database-url="$FERRY_DATABASE_URL dbname=$db" --listen=127.0.0.1:0 \
  --port-file="$work/port" --data-dir="$work/data" --slot=$slot --log-level=info >"$work/ferryd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/port" ] && curl -sf "http://127.0.0.1:$(cat "$work/port")/healthz" >/dev/null && break
  sleep 0.1
done
port=$(cat "$work/port" 2>/dev/null) || { echo "# ferryd did not start:"; sed 's/^/#   /' "$work/ferryd.log"; exit 1; }

token() { FERRY_JWT_SECRET=$secret gateway/ferryd --make-token "$1"; }
export FERRYD_URL=http://127.0.0.1:$port
export FERRY_HTTP_WORK=$PWD/$work
TOKEN_A=$(token u1:a) TOKEN_B=$(token u2:b) TOKEN_AB=$(token u3:a,b)
export TOKEN_A TOKEN_B TOKEN_AB
export FERRY_HTTP_SECRET=$secret
export PGDATABASE=$db

# nginx with proxy_cache in front of ferryd (nginx_cache_test.mjs), on a free port.
# One process, no workers (master_process off), so it runs as the caller.
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  ngx=$(command -v nginx || echo /usr/sbin/nginx)
  nd=$PWD/$work/nginx
  rm -rf "$nd"; mkdir -p "$nd"
  for _ in 1 2 3 4 5; do
    nport=$((30000 + RANDOM % 10000))
    sed -e "s#@DIR@#$nd#g" -e "s#@PORT@#$nport#g" -e "s#@UPSTREAM@#127.0.0.1:$port#g" \
      test/http/nginx.conf.in >"$nd/nginx.conf"
    "$ngx" -p "$nd" -c "$nd/nginx.conf" 2>"$nd/start.log" &
    nginx_pid=$!
    for _ in $(seq 1 50); do
      curl -s -o /dev/null "http://127.0.0.1:$nport/healthz" && break
      kill -0 "$nginx_pid" 2>/dev/null || break
      sleep 0.1
    done
    if curl -s -o /dev/null "http://127.0.0.1:$nport/healthz"; then
      export NGINX_URL=http://127.0.0.1:$nport
      break
    fi
    kill "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null; nginx_pid=
  done
  [ -n "${NGINX_URL:-}" ] || { echo "# nginx did not start:"; sed 's/^/#   /' "$nd/start.log" "$nd/error.log" 2>/dev/null | tail -5; }
fi

rc=0
prove --exec node ${FERRY_TEST_VERBOSE:+-v} "$work"/*_test.mjs || rc=1
if ! kill -0 "$pid" 2>/dev/null || grep -q "ERROR: AddressSanitizer\|runtime error:" "$work/ferryd.log"; then
  echo "# ferryd died or reported memory errors during the tests:"
  tail -20 "$work/ferryd.log" | sed 's/^/#   /'
  rc=1
fi
exit $rc
