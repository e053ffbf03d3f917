#!/usr/bin/env bash
# bench/client.sh -- the client benchmark: what libferry costs, each figure printed beside
# the limit it is compared with, measured in the same run. It prints figures; it is not a
# test (a target missed is not an error; it exits non-zero only when it could not run).
#
#   bench/client.sh   build gateway/ferryd, libferry and build/bench-client/clbench
#                     (bench/client/), use the server in PGHOST/PGPORT when set (as `make
#                     bench` sets them), otherwise start a throwaway PostgreSQL 15
#                     (test/pgcluster.sh, fsync on), create database ferry_bench_client
#                     (dropped first) and run, in CL_ROUNDS interleaved rounds:
#
#   1 local   CL_LOCAL_OPS local writes (ferry_insert: the row into the mirror table and the
#             mutation into the queue, one SQLite transaction, synchronous=FULL) against the
#             limit: as many raw single-row INSERTs, each committed alone, into a plain SQLite
#             table of the same columns in a file of the same directory (WAL, FULL).
#             Target: at least 50% of the raw commit rate.
#   2 e2e     CL_DRAIN inserts queued offline on a fresh device, then one connection through
#             ferryd: the time until the server acknowledged the last one and the queue is
#             empty (the drain time), against the limit: the same number of mutations applied
#             by ferry.apply_mutation over one libpq connection, one after the other.
#             Target: at least 80% of the libpq rate.
#
# The report is printed and written to build/bench-client/client.txt; raw figures to
# build/bench-client/client.kv (key=value).
#
# Environment:
#   CL_LOCAL_OPS   local writes per round (default 2000)
#   CL_DRAIN       mutations queued offline per round (default 10000)
#   CL_ROUNDS      rounds (default 3; the verdicts use the median per-round ratio)
#   CL_ONLY        "local", "e2e" or both (default "local e2e")
#   CL_FERRYD_ARG  one more ferryd option, e.g. --group-sync=0 (to compare)
#   CL_SYNCHRONOUS 1: the device files at synchronous=NORMAL instead of FULL (to compare)
#   PGHOST, PGPORT, PGUSER   the server to use; unset: a throwaway cluster
#   FERRY_PG_BIN   PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"

db=ferry_bench_client
out_dir=build/bench-client
export CL_LOCAL_OPS=${CL_LOCAL_OPS:-2000} CL_DRAIN=${CL_DRAIN:-10000} CL_ROUNDS=${CL_ROUNDS:-3}

die() { echo "bench/client: $*" >&2; exit 1; }

for v in CL_LOCAL_OPS CL_DRAIN CL_ROUNDS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

make --no-print-directory -s -f Makefile -f bench/client/client.mk bench-client >/dev/null \
  || die "could not build gateway/ferryd and $out_dir/clbench"

pgdir=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${PGHOST:-}" ] && psql -X -q -At -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -n "$pgdir" ]; then
    test/pgcluster.sh stop "$pgdir" || echo "bench/client: could not stop the cluster in $pgdir" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${PGHOST:-}" ]; then
  pgdir=$(mktemp -d /tmp/ferry-clbench-pg.XXXXXX)
  cluster_env=$(FERRY_PG_FAST=0 test/pgcluster.sh start "$pgdir") \
    || die "could not start a PostgreSQL cluster in $pgdir"
  eval "$cluster_env"
fi
export PGUSER=${PGUSER:-postgres}
unset PGOPTIONS FERRY_DATABASE_URL
psql -X -q -At -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                               WHERE database = '$db' AND NOT active" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
  -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null || die "could not create database $db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION ferry" >/dev/null \
  || die "could not create the extension in $db (is it installed? make install)"
export PGDATABASE=$db

mkdir -p "$out_dir"
echo "bench/client: $CL_ROUNDS rounds: $CL_LOCAL_OPS local writes, $CL_DRAIN mutations drained" >&2
"$out_dir/clbench" >"$out_dir/client.kv" || die "clbench failed (see above)"

# ---- the report ----------------------------------------------------------------------

kv() { sed -n "s/^$1=//p" "$out_dir/client.kv" | head -n 1; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
col() { local i; for ((i = 0; i < CL_ROUNDS; i++)); do kv "$1.$i.$2"; done | median; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t ? "PASS" : "MISS") }'; }
pct() { awk -v r="$1" 'BEGIN { printf "%.1f%%", 100 * r }'; }

{
  echo "ferry client benchmark ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)); medians of $CL_ROUNDS rounds"
  if [ -n "$(kv local.ratio_median)" ]; then
    echo
    echo "1 local writes ($CL_LOCAL_OPS per round; SQLite WAL, synchronous=FULL)"
    printf '  %-44s %8s /s   p50 %7s us   p99 %7s us\n' "raw single-row INSERT, own commit (limit)" \
      "$(col local raw_ops)" "$(col local raw_p50_us)" "$(col local raw_p99_us)"
    printf '  %-44s %8s /s   p50 %7s us   p99 %7s us\n' "ferry_insert (mirror row + queued mutation)" \
      "$(col local ferry_ops)" "$(col local ferry_p50_us)" "$(col local ferry_p99_us)"
    printf '  ferry_insert / raw commit: %s (target >= 50%%: %s)\n' "$(pct "$(kv local.ratio_median)")" \
      "$(verdict "$(kv local.ratio_median)" 0.5)"
  fi
  if [ -n "$(kv e2e.ratio_median)" ]; then
    echo
    echo "2 end to end ($CL_DRAIN inserts per round, queued offline, then drained through ferryd)"
    printf '  %-44s %8s /s   %7s s\n' "ferry.apply_mutation over libpq (limit)" "$(col e2e libpq_ops)" "$(col e2e libpq_s)"
    printf '  %-44s %8s /s   %7s s\n' "acknowledged through ferryd (drain)" "$(col e2e ferry_ops)" "$(col e2e ferry_s)"
    printf '  acknowledged / apply_mutation over libpq: %s (target >= 80%%: %s)\n' \
      "$(pct "$(kv e2e.ratio_median)")" "$(verdict "$(kv e2e.ratio_median)" 0.8)"
    printf '  time to drain %s offline mutations after reconnect: %s s\n' "$CL_DRAIN" "$(col e2e ferry_s)"
    printf '  CPU per mutation while draining: client %s us, ferryd %s us; ferryd apply time %s us\n' \
      "$(awk -v c="$(col e2e client_cpu_s)" -v n="$CL_DRAIN" 'BEGIN { printf "%.0f", c * 1e6 / n }')" \
      "$(awk -v c="$(col e2e ferryd_cpu_s)" -v n="$CL_DRAIN" 'BEGIN { printf "%.0f", c * 1e6 / n }')" \
      "$(awk -v c="$(col e2e apply_s)" -v n="$CL_DRAIN" 'BEGIN { printf "%.0f", c * 1e6 / n }')"
  fi
} | tee "$out_dir/client.txt"
