#!/usr/bin/env bash
# bench/http.sh -- the HTTP API benchmark: what ferryd's long-polls cost, each figure printed
# beside the limit it is compared with, measured in the same run. It prints figures; it is not
# a test (a target missed is not an error; it exits non-zero only when it could not run).
#
#   bench/http.sh   build gateway/ferryd, use the server in PGHOST/PGPORT when set (as `make
#                   bench` sets them), otherwise start a throwaway PostgreSQL 15 (fsync on),
#                   create database ferry_bench_http (dropped first), start ferryd, and run
#                   bench/http/httpbench.mjs under Node:
#
#   1 parked    BENCH_PARKED long-poll requests (live=true) on one shape at once: how many
#               ferryd holds, and its RSS per parked request; the limit: the bytes of the
#               request itself, which any server must at least keep.
#   2 latency   BENCH_HTTP_CLIENTS clients, one tenant and shape each, in long-poll loops; a
#               writer commits single-row transactions round robin at BENCH_HTTP_RATE/s for
#               BENCH_HTTP_SECONDS: commit acknowledgement -> the row in an HTTP answer,
#               p50/p99. The limit: the same rows seen by pg_recvlogical (test_decoding).
#
# The report is printed and written to build/bench-http/http.txt, every figure to
# build/bench-http/http.kv, ferryd's log to build/bench-http/ferryd.log.
#
# Environment: BENCH_PARKED (10000), BENCH_HTTP_CLIENTS (200), BENCH_HTTP_RATE (200),
# BENCH_HTTP_SECONDS (10), PGHOST/PGPORT/PGUSER (unset: a throwaway cluster), FERRY_PG_BIN.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"

db=ferry_bench_http
slot=ferry_bench_http
lat_slot=ferry_bench_http_lat
out_dir=build/bench-http
secret=bench-http-secret-bench-http-secret-0123456789
die() { echo "bench/http: $*" >&2; exit 1; }

command -v node >/dev/null || die "no node: install nodejs (make deps)"
command -v pg_recvlogical >/dev/null || die "no pg_recvlogical: install postgresql-15 (make deps)"
make --no-print-directory -s gateway/ferryd >/dev/null || die "could not build gateway/ferryd"
mkdir -p "$out_dir"

pgdir=''
pid=''
work=$(mktemp -d /tmp/ferry-httpbench.XXXXXX)
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  fi
  cp "$work/ferryd.log" "$out_dir/ferryd.log" 2>/dev/null || true
  if psql -X -q -At -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    for s in $slot $lat_slot; do
      q -c "SELECT pg_drop_replication_slot('$s') FROM pg_replication_slots WHERE slot_name = '$s'" >/dev/null 2>&1 || true
    done
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  [ -n "$pgdir" ] && { test/pgcluster.sh stop "$pgdir" || true; }
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${PGHOST:-}" ]; then
  pgdir=$(mktemp -d /tmp/ferry-httpbench-pg.XXXXXX)
  out=$(test/pgcluster.sh start "$pgdir") || die "could not start PostgreSQL"
  eval "$out"
  make --no-print-directory -s install >/dev/null || die "could not install the extension"
fi
export PGUSER=${PGUSER:-postgres}
psql -X -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" \
  -c "CREATE DATABASE $db" >/dev/null
q <<'SQL' >/dev/null
CREATE EXTENSION ferry;
CREATE TABLE bench_items (id bigint PRIMARY KEY, ws text NOT NULL, v int);
SELECT ferry.enable_sync('bench_items', 'ws');
INSERT INTO bench_items SELECT g, 'p0', g FROM generate_series(1, 10) g;
CREATE TABLE bench_lat (id bigint PRIMARY KEY, ws text NOT NULL, v int);
SELECT ferry.enable_sync('bench_lat', 'ws');
SQL

conninfo="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$db"
FERRY_JWT_SECRET=$secret gateway/ferryd --database-url="$conninfo" --listen=127.0.0.1:0 \
  --port-file="$work/port" --data-dir="$work/data" --slot=$slot --log-level=warn \
  --pull-rate=0 >"$work/ferryd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/port" ] && curl -sf "http://127.0.0.1:$(cat "$work/port")/healthz" >/dev/null && break
  sleep 0.1
done
[ -s "$work/port" ] || die "ferryd did not start: $(tail -3 "$work/ferryd.log")"

export FERRYD_URL=http://127.0.0.1:$(cat "$work/port") FERRYD_PID=$pid PGDATABASE=$db BENCH_SLOT=$lat_slot
export SECRET_CMD="FERRY_JWT_SECRET=$secret $root/gateway/ferryd --make-token"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

declare -A F
while IFS='=' read -r k v; do F[$k]=$v; done < <(node bench/http/httpbench.mjs parked)
while IFS='=' read -r k v; do F[$k]=$v; done < <(node bench/http/httpbench.mjs latency)

calc() { awk "BEGIN { printf \"%.4g\", $1 }"; }
plus() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%+.2f ms", a - b }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? (v + 0 <= t + 0) : (op == ">=") ? (v + 0 >= t + 0) : (v + 0 < t + 0); print ok ? "PASS" : "MISS" }'; }
kib=$(calc "${F[parked.bytes_each]} / 1024")
{
  printf 'ferry HTTP API benchmark (%s, %s cores)\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)"
  printf '%-30s %-16s %-34s %-10s %-10s %s\n' benchmark figure 'limit (same run)' 'vs limit' target verdict
  printf '%-30s %-16s %-34s %-10s %-10s %s\n' "1 parked long-polls held" "${F[parked.parked]}" \
    "requests sent ${F[parked.requests]}" "$(calc "100 * ${F[parked.parked]} / ${F[parked.requests]}")%" \
    ">= 10000" "$(verdict "${F[parked.parked]}" '>=' 10000)"
  printf '%-30s %-16s %-34s %-10s %-10s %s\n' "1 memory per parked request" "$kib KiB" \
    "the request itself ${F[parked.request_bytes]} B" "$(calc "${F[parked.bytes_each]} / ${F[parked.request_bytes]}")x" \
    "<= 8 KiB" "$(verdict "$kib" '<=' 8)"
  printf '%-30s %-16s %-34s %-10s %-10s %s\n' "2 commit->HTTP client p50" "${F[lat.p50_ms]} ms" \
    "pg_recvlogical ${F[lat.wal_p50_ms]} ms" "$(plus "${F[lat.p50_ms]}" "${F[lat.wal_p50_ms]}")" "< 10 ms" \
    "$(verdict "${F[lat.p50_ms]}" '<' 10)"
  printf '%-30s %-16s %-34s %-10s %-10s %s\n' "2 commit->HTTP client p99" "${F[lat.p99_ms]} ms" \
    "pg_recvlogical ${F[lat.wal_p99_ms]} ms" "$(plus "${F[lat.p99_ms]}" "${F[lat.wal_p99_ms]}")" "< 50 ms" \
    "$(verdict "${F[lat.p99_ms]}" '<' 50)"
  printf '\n1 parked: %s requests opened in %s s; ferryd RSS %s -> %s kB (%s B each); %s answered before\n' \
    "${F[parked.requests]}" "${F[parked.open_seconds]}" "${F[parked.rss_kb_before]}" "${F[parked.rss_kb_after]}" \
    "${F[parked.bytes_each]}" "${F[parked.answered_early]}"
  printf '  the measurement; %s still parked 3 s after the clients hung up\n' "${F[parked.after_close]}"
  printf '  latency from the writer'"'"'s commit acknowledgement (psql); pg_recvlogical can see a row before it\n'
  printf '2 latency: %s clients (shapes), %s commits/s asked, %s/s achieved; %s rows measured, %s never\n' \
    "${F[lat.clients]}" "${F[lat.rate]}" "${F[lat.achieved_rate]}" "${F[lat.rows]}" "${F[lat.missing]}"
  printf '  received, %s request errors; max %s ms; pg_recvlogical saw %s rows\n' \
    "${F[lat.errors]}" "${F[lat.max_ms]}" "${F[lat.wal_rows]}"
} | tee "$out_dir/http.txt"
for k in "${!F[@]}"; do printf '%s=%s\n' "$k" "${F[$k]}"; done | sort >"$out_dir/http.kv"
