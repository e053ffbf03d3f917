#!/usr/bin/env bash
# bench/gateway.sh -- the gateway benchmark: what ferryd costs, each figure printed beside
# the limit it is compared with, measured in the same run. It prints figures; it is not a
# test (a target missed is not an error; it exits non-zero only when it could not run).
#
#   bench/gateway.sh   build gateway/ferryd and build/bench-gateway/gwbench (bench/gateway/),
#                      use the server in PGHOST/PGPORT when set (as `make bench` sets them),
#                      otherwise start a throwaway PostgreSQL 15 (test/pgcluster.sh, fsync on),
#                      create database ferry_bench_gw (dropped first) and run:
#
#   1 ingest     BENCH_ROWS rows inserted in transactions of BENCH_BATCH rows into a synced
#                table, all on one tenant, after a logical slot was created; then, from copies
#                of that slot, in BENCH_GW_ROUNDS interleaved rounds: pg_recvlogical (pgoutput
#                proto 1, publication ferry, to /dev/null, --endpos at the last commit) -- the
#                limit -- and ferryd with no shape, and with one shape holding every row, each
#                timed from its start until /metrics shows the last commit confirmed.
#   2 delivery   the same with one client subscribed to that shape: time until the client
#                has every row.
#   3 latency    BENCH_CLIENTS connections, each with a token for its own tenant and one
#                subscription (so as many shapes); a writer commits single-row transactions
#                at BENCH_RATE/s round robin over the tenants; the time from each commit's
#                acknowledgement to the client receiving the row. The limit: the same writes
#                received by a bare logical replication client (no ferryd).
#   4 routing    ferryd's CPU time per change written to one tenant while it holds 10, 1,000
#                and 10,000 shapes (BENCH_SHAPES) on other tenants: single-row and 100-row
#                transactions as fast as one writer goes, and single-row transactions at
#                BENCH_ROUTE_RATE/s; each compared with its figure at the smallest count.
#   5 memory     ferryd's RSS before and after BENCH_CLIENTS idle authenticated connections,
#                and before and after creating the shapes of benchmark 4.
#
# The report is printed, and written to build/bench-gateway/gateway.txt; every raw figure to
# build/bench-gateway/gateway.kv (key=value); ferryd's logs to build/bench-gateway/logs/.
#
# Environment:
#   BENCH_ROWS          rows of the ingest workload (default 1000000)
#   BENCH_BATCH         rows per transaction of the ingest workload (default 10000)
#   BENCH_GW_ROUNDS     rounds of the ingest comparison (default 5)
#   BENCH_CLIENTS       connections (and tenants, and shapes) of the latency run (default 1000)
#   BENCH_RATE          changes per second of the latency run (default 1000)
#   BENCH_LAT_SECONDS   measured seconds of the latency run, after 2 s of warm-up (default 10)
#   BENCH_SHAPES        shape counts of the routing run (default 10,1000,10000)
#   BENCH_ROUTE_CHANGES changes per routing measurement (default 4000; x4 in 100-row transactions)
#   BENCH_ROUTE_RATE    single-row transactions per second of the paced routing measurement (500)
#   BENCH_GW_ONLY       run only some of: ingest latency routing (default: all, space-separated)
#   GWB_FERRYD          the ferryd binary to measure (default: gateway/ferryd, built first)
#   PGHOST, PGPORT, PGUSER   the server to use; unset: a throwaway cluster
#   FERRY_PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"

rows=${BENCH_ROWS:-1000000}
batch=${BENCH_BATCH:-10000}
rounds=${BENCH_GW_ROUNDS:-5}
clients=${BENCH_CLIENTS:-1000}
rate=${BENCH_RATE:-1000}
lat_seconds=${BENCH_LAT_SECONDS:-10}
shape_levels=${BENCH_SHAPES:-10,1000,10000}
route_changes=${BENCH_ROUTE_CHANGES:-4000}
paced=${BENCH_ROUTE_RATE:-500}
only=${BENCH_GW_ONLY:-ingest latency routing}
db=ferry_bench_gw
out_dir=build/bench-gateway
gwbench=$out_dir/gwbench

die() { echo "bench/gateway: $*" >&2; exit 1; }
note() { echo "bench/gateway: $*" >&2; }

for v in rows batch rounds clients rate lat_seconds route_changes paced; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "${v} must be a positive integer, not '${!v}'"
done
[[ "$shape_levels" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "BENCH_SHAPES must be counts like 10,1000,10000"
command -v pg_recvlogical >/dev/null || die "no pg_recvlogical: install postgresql-15 (make deps)"
wants() { [[ " $only " == *" $1 "* ]]; }

# ---- build ------------------------------------------------------------------------

make --no-print-directory -s -f Makefile -f bench/gateway/gateway.mk bench-gateway >/dev/null \
  || die "could not build gateway/ferryd and $gwbench"

# ---- the server -------------------------------------------------------------------

pgdir=''
work=$(mktemp -d /tmp/ferry-gwbench.XXXXXX)
slots=(gwb_tmpl gwb_run gwb_setup gwb_lat_repl gwb_lat gwb_route)

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

# drop_slot NAME drops a slot of the benchmark database once its consumer has gone.
drop_slot() {
  local i
  for i in $(seq 1 50); do
    if q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
             WHERE slot_name = '$1' AND NOT active" >/dev/null 2>&1 \
       && [ -z "$(q -c "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$1'" 2>/dev/null)" ]; then
      return 0
    fi
    sleep 0.1
  done
  note "could not drop replication slot $1"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  mkdir -p "$out_dir/logs"
  cp "$work"/*.log "$out_dir/logs/" 2>/dev/null || true
  if [ -n "${PGHOST:-}" ] && psql -X -q -At -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    for s in "${slots[@]}"; do
      q -c "SELECT pg_drop_replication_slot('$s') FROM pg_replication_slots WHERE slot_name = '$s'" \
        >/dev/null 2>&1 || true
    done
    # the slots hold WAL and the tables are big: leave nothing behind
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  if [ -n "$pgdir" ]; then
    if [ "$rc" -ne 0 ] && [ -f "$pgdir/server.log" ]; then
      cp "$pgdir/server.log" "$out_dir/logs/server.log" || true
      tail -n 20 "$pgdir/server.log" >&2 || true
    fi
    test/pgcluster.sh stop "$pgdir" || note "could not stop the cluster in $pgdir"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${PGHOST:-}" ]; then
  pgdir=$(mktemp -d /tmp/ferry-gwbench-pg.XXXXXX)
  cluster_env=$(FERRY_PG_FAST=0 test/pgcluster.sh start "$pgdir") \
    || die "could not start a PostgreSQL cluster in $pgdir"
  eval "$cluster_env"
fi
export PGUSER=${PGUSER:-postgres}
unset PGDATABASE PGOPTIONS

# A dropped database keeps nothing, but slots of an earlier, interrupted run would block it.
psql -X -q -At -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                               WHERE database = '$db' AND NOT active" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d postgres \
  -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" \
  || die "could not create database $db"
q <<'SQL' >/dev/null || die "could not set up database $db (is the extension installed? make install)"
CREATE EXTENSION ferry;
-- ingest: one tenant; latency and routing: a tenant per client / shape
CREATE TABLE gwb_items (id bigint PRIMARY KEY, tenant text NOT NULL, payload text, n int);
CREATE TABLE gwb_lat (id bigint PRIMARY KEY, tenant text NOT NULL, payload text);
CREATE TABLE gwb_route (id bigint PRIMARY KEY, tenant text NOT NULL, payload text);
SELECT ferry.enable_sync('gwb_items', 'tenant');
SELECT ferry.enable_sync('gwb_lat', 'tenant');
SELECT ferry.enable_sync('gwb_route', 'tenant');
ALTER TABLE gwb_items SET (autovacuum_enabled = off);
ALTER TABLE gwb_lat SET (autovacuum_enabled = off);
ALTER TABLE gwb_route SET (autovacuum_enabled = off);
SQL

export FERRY_DATABASE_URL="host=$PGHOST port=${PGPORT:-5432} user=$PGUSER dbname=$db"
export FERRY_JWT_SECRET=ferry-gateway-bench-secret-not-for-production-0123456789
# The whole run measures one binary, even if gateway/ferryd is rebuilt meanwhile.
if [ -n "${GWB_FERRYD:-}" ]; then
  revision="$GWB_FERRYD"
else
  revision="$(git describe --always --dirty 2>/dev/null || echo unknown)"
fi
cp "${GWB_FERRYD:-gateway/ferryd}" "$work/ferryd" || die "no ferryd binary at ${GWB_FERRYD:-gateway/ferryd}"
export GWB_FERRYD=$work/ferryd
pg_version=$(q -c "SELECT split_part(current_setting('server_version'), ' ', 1)")
fsync=$(q -c "SHOW fsync")
cores=$(nproc)

declare -A F   # every figure: F[<run>.<key>] = value

# run NAME CMD... runs a gwbench mode (or anything printing key=value lines), keeps its
# figures as F[NAME.key], its output in $work/NAME.out and stderr in $work/NAME.log.
run() {
  local name=$1 k v
  shift
  if ! "$@" >"$work/$name.out" 2>"$work/$name.log"; then
    cat "$work/$name.out" "$work/$name.log" >&2
    die "$name failed: $*"
  fi
  while IFS='=' read -r k v; do
    [ -n "$k" ] && F[$name.$k]=$v
  done <"$work/$name.out"
  sed "s/^/$name./" "$work/$name.out" >>"$work/gateway.kv"
}
mkdir -p "$out_dir"

# calc EXPR: awk arithmetic, "-" when an operand is missing.
calc() { awk "BEGIN { printf \"%.6f\", ($1) }" 2>/dev/null || echo -; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f", lo, hi }'; }

started=$SECONDS

# ---- 3 and 5: latency with many clients; memory per connection --------------------

if wants latency; then
  note "latency: $clients clients on $clients tenants, $rate changes/s for $lat_seconds s (+2 s warm-up)"
  run lat_repl "$gwbench" latency-repl --table=gwb_lat --slot=gwb_lat_repl --clients="$clients" \
    --rate="$rate" --seconds="$lat_seconds"
  drop_slot gwb_lat_repl
  run lat "$gwbench" latency --table=gwb_lat --slot=gwb_lat --data-dir="$work/lat" --log="$work/ferryd-latency.log" \
    --clients="$clients" --rate="$rate" --seconds="$lat_seconds"
  drop_slot gwb_lat
  rm -rf "$work/lat"
  note "latency: ferryd p50 ${F[lat.lat_p50_ms]} ms, p99 ${F[lat.lat_p99_ms]} ms; bare replication p50 ${F[lat_repl.repl_p50_ms]} ms, p99 ${F[lat_repl.repl_p99_ms]} ms"
fi

# ---- 4 and 5: routing cost against the number of shapes; memory per shape --------

if wants routing; then
  note "routing: CPU per change with $shape_levels shapes"
  run route "$gwbench" routing --table=gwb_route --slot=gwb_route --data-dir="$work/route" \
    --log="$work/ferryd-routing.log" --levels="$shape_levels" --changes="$route_changes" --paced-rate="$paced"
  drop_slot gwb_route
  rm -rf "$work/route"
fi

# ---- 1 and 2: ingest of a big workload, against pg_recvlogical ---------------------

if wants ingest; then
  note "ingest: one shape for tenant 'bench' (before the workload)"
  run mkshape "$gwbench" mkshape --data-dir="$work/tmpl" --slot=gwb_setup --tenant=bench --table=gwb_items \
    --log="$work/ferryd-mkshape.log"
  drop_slot gwb_setup
  q -c "SELECT pg_create_logical_replication_slot('gwb_tmpl', 'pgoutput')" >/dev/null
  note "ingest: inserting $rows rows in transactions of $batch"
  {
    for ((a = 1; a <= rows; a += batch)); do
      b=$((a + batch - 1))
      ((b > rows)) && b=$rows
      ins="INSERT INTO gwb_items SELECT g, 'bench', 'payload ' || g, g FROM generate_series($a, $b) g;"
      if ((b == rows)); then
        # the last transaction: its LSN just before COMMIT is past every earlier commit and
        # before its own, so "confirmed >= it" means "everything committed"
        echo "BEGIN; $ins SELECT pg_current_wal_insert_lsn() - '0/0'; COMMIT;"
      else
        echo "$ins"
      fi
    done
  } >"$work/load.sql"
  t0=$EPOCHREALTIME
  target=$(q -f "$work/load.sql" | tail -n 1)
  t1=$EPOCHREALTIME
  F[load.seconds]=$(calc "$t1 - $t0")
  [[ "$target" =~ ^[0-9]+$ ]] || die "no LSN from the workload: '$target'"
  endpos=$(q -c "SELECT '0/0'::pg_lsn + $target")
  F[load.wal_bytes]=$(q -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(),
                               (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'gwb_tmpl'))")
  note "ingest: $rows rows in ${F[load.seconds]} s, $((${F[load.wal_bytes]} / 1048576)) MiB of WAL; last commit at $endpos"
  q -c "CHECKPOINT"

  kinds=(recv none shape client)
  for ((r = 1; r <= rounds; r++)); do
    # rotate the order each round: none of the four always runs first
    order=()
    for ((i = 0; i < ${#kinds[@]}; i++)); do
      order+=("${kinds[(i + r - 1) % ${#kinds[@]}]}")
    done
    for kind in "${order[@]}"; do
      q -c "SELECT pg_copy_logical_replication_slot('gwb_tmpl', 'gwb_run')" >/dev/null
      rm -rf "$work/run"
      case $kind in
        recv)
          run "r$r.recv" "$gwbench" exec -- pg_recvlogical -d "$FERRY_DATABASE_URL" --slot=gwb_run --start \
            --endpos="$endpos" -o proto_version=1 -o publication_names=ferry -f /dev/null --no-loop
          F[r$r.recv.seconds]=${F[r$r.recv.wall_seconds]} ;;
        none)
          run "r$r.none" "$gwbench" ingest --data-dir="$work/run" --slot=gwb_run --target-lsn="$target" \
            --changes="$rows" --log="$work/ferryd-ingest.log"
          F[r$r.none.seconds]=${F[r$r.none.ingest_seconds]} ;;
        shape)
          cp -a "$work/tmpl" "$work/run"
          run "r$r.shape" "$gwbench" ingest --data-dir="$work/run" --slot=gwb_run --target-lsn="$target" \
            --changes="$rows" --log="$work/ferryd-ingest.log"
          F[r$r.shape.seconds]=${F[r$r.shape.ingest_seconds]} ;;
        client)
          cp -a "$work/tmpl" "$work/run"
          run "r$r.client" "$gwbench" ingest --data-dir="$work/run" --slot=gwb_run --target-lsn="$target" \
            --log="$work/ferryd-ingest.log" --client-table=gwb_items --client-tenant=bench --client-rows="$rows"
          F[r$r.client.seconds]=${F[r$r.client.client_seconds]}
          [ "${F[r$r.client.client_changes]}" = "$rows" ] \
            || die "the client received ${F[r$r.client.client_changes]} changes, not $rows" ;;
      esac
      drop_slot gwb_run
      note "ingest round $r: $kind $(calc "$rows / ${F[r$r.$kind.seconds]}" | awk '{ printf "%.0f", $1 }') rows/s"
    done
  done
  drop_slot gwb_tmpl
  rm -rf "$work/run" "$work/tmpl"
fi

# ---- the report -------------------------------------------------------------------

rows_out=()   # "benchmark|figure|limit or baseline|ratio|target|verdict"
add() { rows_out+=("$1|$2|$3|$4|$5|$6"); }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
  if (v == "-" || v == "") { print "-"; exit }
  ok = (op == ">=") ? (v + 0 >= t + 0) : (op == "<=") ? (v + 0 <= t + 0) : (v + 0 < t + 0)
  print ok ? "PASS" : "MISS" }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "-" || v == "") print "-"; else printf f, v }'; }

if wants ingest; then
  for kind in recv none shape client; do
    v=()
    for ((r = 1; r <= rounds; r++)); do v+=("$(calc "$rows / ${F[r$r.$kind.seconds]}")"); done
    F[ingest.$kind.rate]=$(median "${v[@]}")
    F[ingest.$kind.rates]="${v[*]}"
  done
  for kind in recv none shape client; do
    v=()
    for ((r = 1; r <= rounds; r++)); do v+=("$(calc "${F[r$r.$kind.cpu_seconds]} * 1e6 / $rows")"); done
    F[ingest.$kind.cpu_us]=$(median "${v[@]}")
  done
  for kind in none shape; do
    v=()
    for ((r = 1; r <= rounds; r++)); do v+=("$(calc "${F[r$r.$kind.ingest_seconds]} - ${F[r$r.$kind.decoded_seconds]}")"); done
    F[ingest.$kind.sync_tail]=$(median "${v[@]}")
  done
  for kind in none shape client; do
    v=()
    for ((r = 1; r <= rounds; r++)); do v+=("$(calc "100 * ${F[r$r.recv.seconds]} / ${F[r$r.$kind.seconds]}")"); done
    F[ingest.$kind.pct]=$(median "${v[@]}")
    F[ingest.$kind.pct_range]=$(range "${v[@]}")
  done
  recv_rate=$(fmt "${F[ingest.recv.rate]}" '%.0f rows/s')
  add "1 ingest, no shape" "$(fmt "${F[ingest.none.rate]}" '%.0f rows/s')" "pg_recvlogical $recv_rate" \
    "$(fmt "${F[ingest.none.pct]}" '%.1f%%') (${F[ingest.none.pct_range]})" ">= 90%" "$(verdict "${F[ingest.none.pct]}" '>=' 90)"
  add "1 ingest, one shape" "$(fmt "${F[ingest.shape.rate]}" '%.0f rows/s')" "pg_recvlogical $recv_rate" \
    "$(fmt "${F[ingest.shape.pct]}" '%.1f%%') (${F[ingest.shape.pct_range]})" ">= 90%" "$(verdict "${F[ingest.shape.pct]}" '>=' 90)"
  add "2 delivered to 1 client" "$(fmt "${F[ingest.client.rate]}" '%.0f rows/s')" "pg_recvlogical $recv_rate" \
    "$(fmt "${F[ingest.client.pct]}" '%.1f%%') (${F[ingest.client.pct_range]})" ">= 60%" "$(verdict "${F[ingest.client.pct]}" '>=' 60)"
fi
if wants latency; then
  add "3 commit->client p50" "$(fmt "${F[lat.lat_p50_ms]}" '%.2f ms')" "replication $(fmt "${F[lat_repl.repl_p50_ms]}" '%.2f ms')" \
    "$(fmt "$(calc "${F[lat.lat_p50_ms]} / ${F[lat_repl.repl_p50_ms]}")" '%.1fx')" "< 5 ms" "$(verdict "${F[lat.lat_p50_ms]}" '<' 5)"
  add "3 commit->client p99" "$(fmt "${F[lat.lat_p99_ms]}" '%.2f ms')" "replication $(fmt "${F[lat_repl.repl_p99_ms]}" '%.2f ms')" \
    "$(fmt "$(calc "${F[lat.lat_p99_ms]} / ${F[lat_repl.repl_p99_ms]}")" '%.1fx')" "< 25 ms" "$(verdict "${F[lat.lat_p99_ms]}" '<' 25)"
  F[mem.conn]=$(calc "${F[lat.conn_rss_bytes_each]} / 1024")
  add "5 memory per idle connection" "$(fmt "${F[mem.conn]}" '%.1f KiB')" \
    "ferryd RSS $(fmt "$(calc "${F[lat.conn_rss_kb_before]} / 1024")" '%.1f') -> $(fmt "$(calc "${F[lat.conn_rss_kb_after]} / 1024")" '%.1f MiB')" \
    "$clients conns" "<= 16 KiB" "$(verdict "${F[mem.conn]}" '<=' 16)"
fi
if wants routing; then
  IFS=, read -r -a levels <<<"$shape_levels"
  base=${levels[0]}
  for t in txn1 txn100 paced$paced; do
    case $t in
      txn1) what='1-row txns' ;;
      txn100) what='100-row txns' ;;
      *) what="1-row txns, $paced/s" ;;
    esac
    for l in "${levels[@]}"; do
      us=${F[route.shapes_${l}_${t}_us_per_change]}
      if [ "$l" = "$base" ]; then
        add "4 CPU/change, $l shapes, $what" "$(fmt "$us" '%.2f us')" "baseline" "1.00x" "" ""
      else
        ratio=$(calc "$us / ${F[route.shapes_${base}_${t}_us_per_change]}")
        add "4 CPU/change, $l shapes, $what" "$(fmt "$us" '%.2f us')" \
          "$base shapes $(fmt "${F[route.shapes_${base}_${t}_us_per_change]}" '%.2f us')" \
          "$(fmt "$ratio" '%.2fx')" "<= 1.5x" "$(verdict "$ratio" '<=' 1.5)"
      fi
    done
  done
  last=${levels[${#levels[@]} - 1]}
  if [ "${#levels[@]}" -gt 1 ]; then
    # per shape: from the first count to the last, so one-time costs of the first shapes
    # (snapshot threads' arenas, code paged in) are not spread over them
    F[mem.shape]=$(calc "(${F[route.shapes_${last}_rss_kb]} - ${F[route.shapes_${base}_rss_kb]}) / ($last - $base)")
    F[mem.shape_restart]=$(calc "(${F[route.restart_rss_kb]} - ${F[route.rss_kb_0]}) / $last")
    add "5 memory per shape" "$(fmt "${F[mem.shape]}" '%.1f KiB')" \
      "ferryd RSS $(fmt "$(calc "${F[route.shapes_${base}_rss_kb]} / 1024")" '%.1f') -> $(fmt "$(calc "${F[route.shapes_${last}_rss_kb]} / 1024")" '%.1f MiB')" \
      "+$((last - base)) shapes" "<= 8 KiB" "$(verdict "${F[mem.shape]}" '<=' 8)"
    add "5   the same after a restart" "$(fmt "${F[mem.shape_restart]}" '%.1f KiB')" \
      "ferryd RSS $(fmt "$(calc "${F[route.rss_kb_0]} / 1024")" '%.1f') -> $(fmt "$(calc "${F[route.restart_rss_kb]} / 1024")" '%.1f MiB')" \
      "$last shapes" "<= 8 KiB" "$(verdict "${F[mem.shape_restart]}" '<=' 8)"
  fi
fi

{
  printf 'ferry gateway benchmark (ferryd %s, PostgreSQL %s, %s cores, fsync %s; %s s)\n' "$revision" \
    "$pg_version" "$cores" "$fsync" "$((SECONDS - started))"
  printf '\n  %-48s %-16s %-34s %-20s %-9s %s\n' benchmark figure 'limit / baseline' ratio target ''
  for line in "${rows_out[@]}"; do
    IFS='|' read -r b f l ra ta ve <<<"$line"
    printf '  %-48s %-16s %-34s %-20s %-9s %s\n' "$b" "$f" "$l" "$ra" "$ta" "$ve" | sed 's/ *$//'
  done
  if wants ingest; then
    printf '\n1/2 ingest: %s rows in transactions of %s (%s MiB of WAL), %s rounds, median (range of the per-round ratios).\n' \
      "$rows" "$batch" "$((${F[load.wal_bytes]} / 1048576))" "$rounds"
    # shellcheck disable=SC2086  # space-separated lists
    printf '    rows/s per round: pg_recvlogical %s; ferryd %s; one shape %s; to the client %s\n' \
      "$(printf '%.0f ' ${F[ingest.recv.rates]})" "$(printf '%.0f ' ${F[ingest.none.rates]})" \
      "$(printf '%.0f ' ${F[ingest.shape.rates]})" "$(printf '%.0f ' ${F[ingest.client.rates]})"
    printf '    CPU per row (median): pg_recvlogical %.2f us; ferryd %.2f us (no shape), %.2f us (one shape), %.2f us (with the client)\n' \
      "${F[ingest.recv.cpu_us]}" "${F[ingest.none.cpu_us]}" "${F[ingest.shape.cpu_us]}" "${F[ingest.client.cpu_us]}"
    printf '    from the last change decoded to its commit confirmed (shape logs fsynced), median: %.3f s (no shape), %.3f s (one shape)\n' \
      "${F[ingest.none.sync_tail]}" "${F[ingest.shape.sync_tail]}"
  fi
  if wants latency; then
    printf '\n3 latency: %s clients, %s tenants, %s single-row commits/s (achieved %s/s), %s rows measured;\n' \
      "$clients" "$clients" "$rate" "${F[lat.lat_rate]}" "${F[lat.lat_rows]}"
    printf '    %s later than 500 ms, %s never received (counted with the time waited for them; a new\n' \
      "${F[lat.lat_over_500ms]}" "${F[lat.lat_missing]}"
    printf '    subscription to the same shape found %s of %s probed in the shape log)\n' \
      "${F[lat.lat_missing_in_log]}" "${F[lat.lat_missing_probed]}"
    printf '    from the commit acknowledgement, ms: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n' \
      "${F[lat.lat_p50_ms]}" "${F[lat.lat_p90_ms]}" "${F[lat.lat_p99_ms]}" "${F[lat.lat_p999_ms]}" "${F[lat.lat_max_ms]}"
    printf '    the same, bare replication client:  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n' \
      "${F[lat_repl.repl_p50_ms]}" "${F[lat_repl.repl_p90_ms]}" "${F[lat_repl.repl_p99_ms]}" \
      "${F[lat_repl.repl_p999_ms]}" "${F[lat_repl.repl_max_ms]}"
    printf '    from the INSERT being sent, ms: p50 %s p99 %s (the commit itself: p50 %s p99 %s)\n' \
      "${F[lat.lat_send_p50_ms]}" "${F[lat.lat_send_p99_ms]}" "${F[lat.lat_commit_p50_ms]}" "${F[lat.lat_commit_p99_ms]}"
    printf '    CPU while streaming: ferryd %.0f%% of a core (%s file descriptors), gwbench (clients and writer) %.0f%%\n' \
      "$(calc "${F[lat.lat_ferryd_cpu_share]} * 100")" "${F[lat.ferryd_fds]}" "$(calc "${F[lat.lat_gwbench_cpu_share]} * 100")"
    printf '5   per idle connection: RSS %s B, anonymous %s B, heap reserved (VmData) %s B;\n' \
      "${F[lat.conn_rss_bytes_each]}" "${F[lat.conn_anon_bytes_each]}" "${F[lat.conn_vmdata_bytes_each]}"
    printf '    per subscribed connection with its own shape, on top: RSS %s B, VmData %s B\n' \
      "${F[lat.sub_rss_bytes_each]}" "${F[lat.sub_vmdata_bytes_each]}"
  fi
  if wants routing; then
    printf '\n4 routing: ferryd main-thread CPU per change written to one tenant, median of 5 runs (the runs), changes/s:\n'
    for l in "${levels[@]}"; do
      printf '    %6s shapes: 1-row txns %s us (%s) %s/s; 100-row txns %s us (%s) %s/s;\n' \
        "$l" "${F[route.shapes_${l}_txn1_us_per_change]}" "${F[route.shapes_${l}_txn1_us_per_change_runs]}" \
        "${F[route.shapes_${l}_txn1_changes_per_second]}" \
        "${F[route.shapes_${l}_txn100_us_per_change]}" "${F[route.shapes_${l}_txn100_us_per_change_runs]}" \
        "${F[route.shapes_${l}_txn100_changes_per_second]}"
      printf '    %6s         1-row txns at %s/s %s us (%s); idle %s ms CPU/s; RSS %s kB; %s fds\n' \
        '' "$paced" "${F[route.shapes_${l}_paced${paced}_us_per_change]}" \
        "${F[route.shapes_${l}_paced${paced}_us_per_change_runs]}" \
        "${F[route.shapes_${l}_idle_cpu_ms_per_s]}" "${F[route.shapes_${l}_rss_kb]}" "${F[route.shapes_${l}_fds]}"
    done
    printf '    restart with %s shapes: healthy in %s s\n' "${F[route.restart_shapes]}" "${F[route.restart_seconds]}"
  fi
} | tee "$work/gateway.txt"

for k in "${!F[@]}"; do printf '%s=%s\n' "$k" "${F[$k]}"; done | sort >"$out_dir/gateway.kv"
cp "$work/gateway.txt" "$out_dir/gateway.txt"
echo "(also in $out_dir/gateway.txt; every figure in $out_dir/gateway.kv; ferryd logs in $out_dir/logs/)"

# The HTTP API benchmark (bench/http.sh) against the same server, unless BENCH_HTTP=0.
if [ "${BENCH_HTTP:-1}" != 0 ] && [ -x bench/http.sh ]; then
  echo
  bench/http.sh || note "the HTTP API benchmark could not run"
fi
