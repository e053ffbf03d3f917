#!/usr/bin/env bash
# bench/run.sh -- the extension benchmark (`make bench`): what ferry's trigger and
# apply_mutation cost, each printed beside its baseline. It prints figures; it is not a test.
#
#   bench/run.sh     start a throwaway PostgreSQL 15 (test/pgcluster.sh, fsync on) unless
#                    PGHOST is set (then use that server, as `make bench` does), create
#                    database ferry_bench (dropped first if it exists) with the extension
#                    and two identical tables, one synced, then run with pgbench, 1 client
#                    over libpq, each of:
#                      select1        SELECT 1: the round-trip limit
#                      update_plain   single-row UPDATE on the ordinary table (baseline)
#                      update_synced  the same UPDATE on the synced table
#                      apply_update   ferry.apply_mutation of one column of one row
#                      apply_purged   the same, right after ferry.mutations was purged
#                                     and vacuumed (every other run finds BENCH_HISTORY
#                                     older results there, as a server in use has)
#                    in interleaved rounds, with synchronous_commit on and then off, and
#                    print for each the median tps and the server CPU per transaction,
#                    and how each compares with its baseline.
#
# The scripts and the schema are in bench/extension/; bench/README.md says how to read
# the report. It is also written to build/bench/extension.txt and, machine-readable,
# build/bench/extension.json; the pgbench output of each run to build/bench/logs/.
# Exits non-zero only when the benchmark could not run (a target missed is not an error).
#
# Environment:
#   BENCH_SECONDS   seconds per pgbench run (default 4)
#   BENCH_ROUNDS    runs of each measurement (default 7)
#   BENCH_ROWS      rows in each table (default 10000)
#   BENCH_HISTORY   older results kept in ferry.mutations (default 50000)
#   PGHOST, PGPORT, PGUSER   the server to use; unset: a throwaway cluster
#   FERRY_PG_BIN    PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   BENCH_GATEWAY=0 skip the gateway benchmark (bench/gateway.sh) that follows
#   BENCH_CLIENT=0  skip the client benchmark (bench/client.sh) that follows it
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"

seconds=${BENCH_SECONDS:-4}
rounds=${BENCH_ROUNDS:-7}
rows=${BENCH_ROWS:-10000}
history=${BENCH_HISTORY:-50000}
db=ferry_bench
scripts=bench/extension
out_dir=build/bench

# Measurements, in the order of odd rounds (even rounds run backwards); labels as
# printed; the pgbench script (bench/extension/<script>.pgbench) of each.
names=(select1 update_plain update_synced apply_update apply_purged)
declare -A label=(
  [select1]='SELECT 1 (round-trip limit)'
  [update_plain]='UPDATE, plain table'
  [update_synced]='UPDATE, synced table'
  [apply_update]='apply_mutation update'
  [apply_purged]='  the same, mutations purged'
)
declare -A script=(
  [select1]=select1 [update_plain]=update_plain [update_synced]=update_synced
  [apply_update]=apply_update [apply_purged]=apply_update
)
configs=(on off)   # synchronous_commit

# Comparisons: measurement, baseline, target in percent of the baseline (0: none).
# The targets are the issue's: the trigger costs at most 15 %; apply_mutation does at
# least half the updates of a raw UPDATE over libpq on the same (synced) table.
ratios=(synced_vs_plain apply_vs_synced apply_vs_plain purged_vs_synced)
declare -A ratio_of=(
  [synced_vs_plain]='update_synced update_plain 85'
  [apply_vs_synced]='apply_update update_synced 50'
  [apply_vs_plain]='apply_update update_plain 0'
  [purged_vs_synced]='apply_purged update_synced 0'
)

die() { echo "bench: $*" >&2; exit 1; }

for v in seconds rounds rows history; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_${v^^} must be a positive integer, not '${!v}'"
done
command -v pgbench >/dev/null || die "no pgbench: install postgresql-15 (make deps)"

# ---- the server -------------------------------------------------------------------

pgdir=''
# The pgbench logs are written to a directory of our own and moved to build/bench/logs
# at the end (a `make clean` meanwhile would remove build/ under a running benchmark).
logs=$(mktemp -d /tmp/ferry-bench-logs.XXXXXX)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # A failed run keeps its pgbench output, and the server log of our own cluster.
  if [ "$rc" -ne 0 ]; then
    mkdir -p "$out_dir/logs"
    cp "$logs"/*.log "$out_dir/logs/" 2>/dev/null || true
    if [ -n "$pgdir" ] && [ -f "$pgdir/server.log" ]; then
      cp "$pgdir/server.log" "$out_dir/server.log" || true
      printf '\n==== last 30 lines of the server log (all of it: %s/server.log) ====\n' "$out_dir" >&2
      tail -n 30 "$pgdir/server.log" >&2 || true
    fi
  fi
  rm -rf "$logs"
  if [ -n "$pgdir" ]; then
    test/pgcluster.sh stop "$pgdir" || echo "bench: could not stop the cluster in $pgdir" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${PGHOST:-}" ]; then
  pgdir=$(mktemp -d /tmp/ferry-bench.XXXXXX)
  # fsync stays on: synchronous_commit=on must cost what it costs an app.
  cluster_env=$(FERRY_PG_FAST=0 test/pgcluster.sh start "$pgdir") \
    || die "could not start a PostgreSQL cluster in $pgdir"
  eval "$cluster_env"
fi
export PGUSER=${PGUSER:-postgres}
unset PGDATABASE PGOPTIONS

# q runs SQL in the benchmark database and prints bare values.
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres \
  -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" \
  || die "could not create database $db on ${PGHOST}:${PGPORT:-5432}"
psql -X -q -v ON_ERROR_STOP=1 -v rows="$rows" -v history="$history" -d "$db" \
     -f "$scripts/setup.sql" >/dev/null \
  || die "could not set up database $db (is the extension installed? make install)"

pg_version=$(q -c "SELECT split_part(current_setting('server_version'), ' ', 1)")
fsync=$(q -c "SHOW fsync")
cores=$(nproc)

# The server's CPU time is read from the postmaster's /proc entry: a backend's CPU time
# is added to the postmaster's "children" times when it exits. Only for a server on this
# machine whose postmaster.pid we can read; otherwise CPU figures are n/a.
clk_tck=$(getconf CLK_TCK)
postmaster=''
datadir=$(q -c "SHOW data_directory")
if [ -r "$datadir/postmaster.pid" ]; then
  postmaster=$(head -n 1 "$datadir/postmaster.pid")
  [ -r "/proc/$postmaster/stat" ] || postmaster=''
fi

# children_cpu prints the CPU time, in clock ticks, of the postmaster's exited children.
children_cpu() {
  # Fields 16 and 17 of /proc/PID/stat (cutime, cstime); field 2, the command, is in
  # parentheses and may hold spaces, so count from after it.
  sed -E 's/^.*\) //' "/proc/$postmaster/stat" | awk '{ print $14 + $15 }'
}

# ---- one run ----------------------------------------------------------------------

# reset_state makes every run of measurement $1 start alike: vacuumed tables, a fresh
# checkpoint (so no run pays for another's dirty pages), and in ferry.mutations only the
# $history older results of setup.sql -- or, for apply_purged, nothing at all, as
# ferry.purge_mutations leaves it on a server that had no writes for a day.
reset_state() {
  if [ "$1" = apply_purged ]; then
    q -c "SELECT ferry.purge_mutations('0')" >/dev/null
  else
    q -c "DELETE FROM ferry.mutations WHERE client_id <> 'history'" \
      -c "SELECT bench_fill_history($history)
           WHERE NOT EXISTS (SELECT FROM ferry.mutations WHERE client_id = 'history')" >/dev/null
  fi
  q -c "VACUUM bench_plain, bench_synced, ferry.mutations" -c "CHECKPOINT"
}

# check_applied fails unless every mutation of the benchmark recorded since the last
# reset_state came back "applied" with nothing overridden; $1 says which run.
check_applied() {
  local bad
  bad=$(q -c "SELECT count(*) || ' of '
                       || (SELECT count(*) FROM ferry.mutations WHERE client_id = 'bench')
                       || ' not applied, e.g. ' || min(result::text)
                FROM ferry.mutations
               WHERE client_id = 'bench' AND (status <> 'applied' OR result ? 'overridden')
              HAVING count(*) > 0")
  [ -z "$bad" ] || die "apply_mutation did not apply in $1: $bad"
}

# pgbench_run NAME SYNC SECONDS LOG runs the script of measurement NAME for SECONDS with
# synchronous_commit=SYNC; prints "tps cpu_us_per_transaction wal_bytes_per_transaction"
# (cpu "-" when it cannot be read).
pgbench_run() {
  local name=$1 sync=$2 secs=$3 log=$4 file lsn rate txns walbytes cpu0='' cpu1='' cpu=-
  file=$scripts/${script[$name]}.pgbench
  lsn=$(q -c "SELECT pg_current_wal_insert_lsn()")
  if [ -n "$postmaster" ]; then
    sleep 0.2   # let the postmaster reap the backends of the statements above
    cpu0=$(children_cpu)
  fi
  if ! PGOPTIONS="-c synchronous_commit=$sync" pgbench -n -M prepared -c 1 -j 1 \
       -T "$secs" -D rows="$rows" -f "$file" "$db" >"$log" 2>&1; then
    cat "$log" >&2
    die "pgbench failed on $file (synchronous_commit=$sync); output in $out_dir/logs/${log##*/}"
  fi
  if [ -n "$postmaster" ]; then
    sleep 0.3   # ... and the backend pgbench used
    cpu1=$(children_cpu)
  fi
  walbytes=$(q -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn')")
  rate=$(sed -n -E 's/^tps = ([0-9.]+) .*/\1/p' "$log" | tail -n 1)
  txns=$(sed -n -E 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$log")
  if [ -z "$rate" ] || [ -z "$txns" ] || [ "$txns" -eq 0 ]; then
    die "no tps in the pgbench output of $name (synchronous_commit=$sync): $out_dir/logs/${log##*/}"
  fi
  if [ -n "$cpu1" ] && [ "$cpu1" -gt "$cpu0" ]; then
    cpu=$(awk -v c=$((cpu1 - cpu0)) -v hz="$clk_tck" -v n="$txns" 'BEGIN { printf "%.1f", c / hz * 1e6 / n }')
  fi
  printf '%s %s %s\n' "$rate" "$cpu" "$(awk -v w="$walbytes" -v n="$txns" 'BEGIN { printf "%.0f", w / n }')"
}

# ---- the runs ---------------------------------------------------------------------

# The synced UPDATE must really go through ferry's trigger, and apply_update must come
# back "applied", before anything is timed; the short runs also warm caches.
v_before=$(q -c "SELECT sum(ferry_version) FROM bench_synced")
for name in "${names[@]}"; do
  reset_state "$name"
  pgbench_run "$name" on 2 "$logs/warmup-$name.log" >/dev/null
  [ "${script[$name]}" != apply_update ] || check_applied "the warm-up run of $name"
done
[ "$(q -c "SELECT sum(ferry_version) FROM bench_synced")" -gt "$v_before" ] \
  || die "UPDATE on bench_synced did not bump ferry_version: ferry's trigger did not run"

declare -A tps cpu wal   # [sync:name:round] -> tps, CPU us per transaction, WAL bytes per transaction
total=$(( ${#configs[@]} * rounds * ${#names[@]} ))
n=0
echo "bench: $total runs of $seconds s (synchronous_commit on and off, $rounds rounds of ${#names[@]})" >&2
for sync in "${configs[@]}"; do
  for ((r = 1; r <= rounds; r++)); do
    # Odd rounds in the order of names, even rounds backwards: the runs compared with
    # each other are always next to each other, and none is always first.
    order=("${names[@]}")
    if ((r % 2 == 0)); then
      for ((i = 0; i < ${#names[@]}; i++)); do
        order[i]=${names[${#names[@]} - 1 - i]}
      done
    fi
    for name in "${order[@]}"; do
      n=$((n + 1))
      reset_state "$name"
      read -r t c w < <(pgbench_run "$name" "$sync" "$seconds" "$logs/sync_$sync-$name-$r.log")
      [ "${script[$name]}" != apply_update ] \
        || check_applied "round $r of $name, synchronous_commit=$sync"
      tps[$sync:$name:$r]=$t
      cpu[$sync:$name:$r]=$c
      wal[$sync:$name:$r]=$w
      printf 'bench: [%d/%d] synchronous_commit=%-3s %-14s %8.0f tps %8s us CPU/tx\n' \
        "$n" "$total" "$sync" "$name" "$t" "$c" >&2
    done
  done
done
reset_state select1

# ---- the figures ------------------------------------------------------------------

# median prints the median of its arguments, "-" when one of them is "-".
median() {
  printf '%s\n' "$@" | sort -g | awk '$1 == "-" { na = 1 } { v[NR] = $1 }
    END { if (na) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# range prints "MIN-MAX" of its arguments with one decimal.
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f", lo, hi }'; }
# pct A B prints 100 * A / B with one decimal, "-" when either is "-".
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.1f", 100 * a / b }'; }
# verdict PERCENT TARGET prints PASS or MISS.
verdict() { awk -v p="$1" -v t="$2" 'BEGIN { print (p != "-" && p >= t) ? "PASS" : "MISS" }'; }
# json_list VALUE... prints [VALUE, ...], null for "-".
json_list() {
  local out='' x
  for x in "$@"; do
    [ "$x" != - ] || x=null
    out+="${out:+, }$x"
  done
  printf '[%s]' "$out"
}
# json_num VALUE prints VALUE, or null for "-".
json_num() { if [ "$1" = - ]; then echo null; else echo "$1"; fi; }

# For each measurement its median tps, CPU and WAL per transaction; for each comparison,
# round by round (both runs of a round ran next to each other, so that the noise of a
# moment hits both): tps / baseline tps, and baseline CPU / CPU (the throughput ratio if
# both were bound by the server's CPU); then the median and range of those.
declare -A runs med cpu_med wal_med ratio_tps ratio_cpu tps_pct tps_range cpu_pct
for sync in "${configs[@]}"; do
  for name in "${names[@]}"; do
    v=() c=() w=()
    for ((r = 1; r <= rounds; r++)); do
      v+=("${tps[$sync:$name:$r]}")
      c+=("${cpu[$sync:$name:$r]}")
      w+=("${wal[$sync:$name:$r]}")
    done
    runs[$sync:$name]=${v[*]}
    med[$sync:$name]=$(median "${v[@]}")
    cpu_med[$sync:$name]=$(median "${c[@]}")
    wal_med[$sync:$name]=$(median "${w[@]}")
  done
  for ratio in "${ratios[@]}"; do
    read -r a b _ <<<"${ratio_of[$ratio]}"
    v=() c=()
    for ((r = 1; r <= rounds; r++)); do
      v+=("$(pct "${tps[$sync:$a:$r]}" "${tps[$sync:$b:$r]}")")
      c+=("$(pct "${cpu[$sync:$b:$r]}" "${cpu[$sync:$a:$r]}")")
    done
    ratio_tps[$sync:$ratio]=${v[*]}
    ratio_cpu[$sync:$ratio]=${c[*]}
    tps_pct[$sync:$ratio]=$(median "${v[@]}")
    tps_range[$sync:$ratio]=$(range "${v[@]}")
    cpu_pct[$sync:$ratio]=$(median "${c[@]}")
  done
done

# ---- the report -------------------------------------------------------------------

# row LABEL TPS COMPARISON CPU prints one line: tps, the comparison (a name of ratios:
# percent and range, target and verdict by tps; the same by CPU; or "baseline"), and the
# CPU per transaction. Empty or "-" fields print blank.
row() {
  local text=$1 t=$2 ratio=$3 us=$4 vs='' goal='' cvs='' target sync=$cur_sync
  if [ "$ratio" = baseline ]; then
    vs=baseline
    cvs=baseline
  elif [ -n "$ratio" ]; then
    read -r _ _ target <<<"${ratio_of[$ratio]}"
    vs=$(printf '%5.1f%% (%s)' "${tps_pct[$sync:$ratio]}" "${tps_range[$sync:$ratio]}")
    [ "${cpu_pct[$sync:$ratio]}" = - ] || cvs=$(printf '%5.1f%%' "${cpu_pct[$sync:$ratio]}")
    if [ "$target" -gt 0 ]; then
      goal=$(printf '>= %d%% %s' "$target" "$(verdict "${tps_pct[$sync:$ratio]}" "$target")")
      [ -z "$cvs" ] || cvs="$cvs $(verdict "${cpu_pct[$sync:$ratio]}" "$target")"
    fi
  fi
  [ -z "$t" ] || t=$(printf '%.0f' "$t")
  if [ -z "$us" ] || [ "$us" = - ]; then us=''; else us=$(printf '%.1f' "$us"); fi
  printf '  %-30s %7s  %-22s %-12s %7s  %s\n' "$text" "$t" "$vs" "$goal" "$us" "$cvs" | sed 's/ *$//'
}

{
  printf 'ferry extension benchmark (PostgreSQL %s, %s cores, fsync %s, %s rows; %s rounds of %s s)\n' \
    "$pg_version" "$cores" "$fsync" "$rows" "$rounds" "$seconds"
  printf 'tps: pgbench, 1 client, prepared statements over a Unix socket, median of the rounds.\n'
  printf 'CPU: server CPU time per transaction (us), median. vs baseline: median of the per-round\n'
  printf 'ratios (range); by CPU: baseline CPU / CPU, the tps ratio were both bound by the CPU.\n'
  printf 'Baseline of the synced UPDATE: the plain UPDATE; of apply_mutation: the synced UPDATE.\n'
  for sync in "${configs[@]}"; do
    cur_sync=$sync
    printf '\nsynchronous_commit=%-3s %21s  %-22s %-12s %7s  %s\n' "$sync" tps 'vs baseline' target CPU/tx 'by CPU'
    row "${label[select1]}" "${med[$sync:select1]}" '' "${cpu_med[$sync:select1]}"
    row "${label[update_plain]}" "${med[$sync:update_plain]}" baseline "${cpu_med[$sync:update_plain]}"
    row "${label[update_synced]}" "${med[$sync:update_synced]}" synced_vs_plain "${cpu_med[$sync:update_synced]}"
    row "${label[apply_update]}" "${med[$sync:apply_update]}" apply_vs_synced "${cpu_med[$sync:apply_update]}"
    row '  vs the plain UPDATE' '' apply_vs_plain ''
    row "${label[apply_purged]}" "${med[$sync:apply_purged]}" purged_vs_synced "${cpu_med[$sync:apply_purged]}"
    printf '  tps of each round; WAL written per transaction (median):\n'
    for name in "${names[@]}"; do
      # shellcheck disable=SC2086  # a space-separated list
      printf '    %-14s %-50s %5.0f bytes\n' "$name" "$(printf '%.0f ' ${runs[$sync:$name]})" \
        "${wal_med[$sync:$name]}"
    done
  done
  if [ -z "$postmaster" ]; then
    printf '\n(CPU figures need the server on this machine, with its postmaster.pid readable.)\n'
  fi
} | tee "$logs/extension.txt"

{
  printf '{\n'
  printf '  "benchmark": "extension",\n'
  printf '  "postgres": "%s", "cores": %s, "fsync": "%s",\n' "$pg_version" "$cores" "$fsync"
  printf '  "rows": %s, "history": %s, "seconds_per_run": %s, "rounds": %s,\n' \
    "$rows" "$history" "$seconds" "$rounds"
  printf '  "configs": {\n'
  for ((k = 0; k < ${#configs[@]}; k++)); do
    sync=${configs[$k]}
    printf '    "synchronous_commit=%s": {\n' "$sync"
    for name in "${names[@]}"; do
      c=()
      for ((r = 1; r <= rounds; r++)); do c+=("${cpu[$sync:$name:$r]}"); done
      # shellcheck disable=SC2086
      printf '      "%s": {"median_tps": %s, "tps": %s, "median_cpu_us_per_tx": %s, "cpu_us_per_tx": %s, "wal_bytes_per_tx": %s},\n' \
        "$name" "${med[$sync:$name]}" "$(json_list ${runs[$sync:$name]})" \
        "$(json_num "${cpu_med[$sync:$name]}")" "$(json_list "${c[@]}")" "${wal_med[$sync:$name]}"
    done
    for ((i = 0; i < ${#ratios[@]}; i++)); do
      ratio=${ratios[$i]}
      read -r a b target <<<"${ratio_of[$ratio]}"
      # shellcheck disable=SC2086
      printf '      "%s": {"of": "%s", "baseline": "%s", "tps_percent": %s, "tps_percent_rounds": %s, "cpu_percent": %s, "cpu_percent_rounds": %s' \
        "$ratio" "$a" "$b" "${tps_pct[$sync:$ratio]}" "$(json_list ${ratio_tps[$sync:$ratio]})" \
        "$(json_num "${cpu_pct[$sync:$ratio]}")" "$(json_list ${ratio_cpu[$sync:$ratio]})"
      if [ "$target" -gt 0 ]; then
        printf ', "target_percent": %s, "pass_tps": %s, "pass_cpu": %s' "$target" \
          "$([ "$(verdict "${tps_pct[$sync:$ratio]}" "$target")" = PASS ] && echo true || echo false)" \
          "$([ "$(verdict "${cpu_pct[$sync:$ratio]}" "$target")" = PASS ] && echo true || echo false)"
      fi
      printf '}%s\n' "$([ "$i" -lt $((${#ratios[@]} - 1)) ] && echo ,)"
    done
    printf '    }%s\n' "$([ "$k" -lt $((${#configs[@]} - 1)) ] && echo ,)"
  done
  printf '  }\n'
  printf '}\n'
} >"$logs/extension.json"

rm -rf "$out_dir"
mkdir -p "$out_dir/logs"
mv "$logs/extension.txt" "$logs/extension.json" "$out_dir/"
mv "$logs"/*.log "$out_dir/logs/"
echo "(also in $out_dir/extension.txt and $out_dir/extension.json; pgbench output in $out_dir/logs/)"

# The gateway benchmark (bench/gateway.sh) against the same server, unless BENCH_GATEWAY=0.
if [ "${BENCH_GATEWAY:-1}" != 0 ] && [ -x "$(dirname "${BASH_SOURCE[0]}")/gateway.sh" ]; then
  echo
  "$(dirname "${BASH_SOURCE[0]}")/gateway.sh"
fi

# The client benchmark (bench/client.sh) against the same server, unless BENCH_CLIENT=0.
if [ "${BENCH_CLIENT:-1}" != 0 ] && [ -x "$(dirname "${BASH_SOURCE[0]}")/client.sh" ]; then
  echo
  "$(dirname "${BASH_SOURCE[0]}")/client.sh"
fi
