#!/usr/bin/env bash
# test/run.sh -- the one test command (`make test`): build, install, throwaway cluster, every suite.
#
#   test/run.sh              install deps, build, install the extension, start a throwaway
#                            PostgreSQL 15 (test/pgcluster.sh), create database ferry_test with
#                            pgtap and ferry, run every suite, stop and remove the cluster
#   test/run.sh SUITE...     the same, running only the named suites (see SUITES below)
#   test/run.sh --bench      the same setup, then bench/run.sh instead of the suites
#
# Exits non-zero when the setup or any suite failed. On failure the server log is kept
# in build/test-logs/ and its last lines are printed; each suite's output is always in
# build/test-logs/<suite>.log.
#
# Environment:
#   FERRY_SKIP_DEPS=1   do not run `make deps`
#   FERRY_TEST_VERBOSE=1     print every TAP line (prove -v)
#   FERRY_TEST_KEEP=1        leave the cluster running at the end and print how to reach it
#   FERRY_PG_FAST            fsync = off in the test cluster; default 1 for tests, 0 for --bench
#   FERRY_QA_FULL=1          the qa suite runs every scenario, longer (make test-full)
#
# What a suite sees: PGHOST, PGPORT, PGUSER=postgres, PGDATABASE=ferry_test,
# FERRY_DATABASE_URL (conninfo of ferry_test), FERRY_ROOT (the repository),
# FERRY_TEST_PGDIR (the cluster's directory; its log is $FERRY_TEST_PGDIR/server.log).
# shellcheck disable=SC2317  # suite functions and the exit trap are called indirectly
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# PostgreSQL 15's own psql, pg_dump, pgbench... (not another version through pg_wrapper).
export PATH="${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"

# ---- the suites -------------------------------------------------------------------
#
# A suite is a function suite_<name> run from the repository root with the variables
# above. It returns 0 when it passed, 77 when it found nothing to run, anything else
# when it failed. To add one (the gateway's unit tests, the client's, the scenario
# tests), write its function and add its name to SUITES, in the order they should run.

SUITES=(pgtap extension gateway fuzz client http qa)

verbose=()
[ "${FERRY_TEST_VERBOSE:-0}" = 1 ] && verbose=(--verbose)

# prove_c_tests runs the C TAP programs built from the sources in directory $1
# (build/<dir>/<name>.t for <dir>/<name>.c); 77 when there are none.
prove_c_tests() {
  local src_dir=$1 bins=() src
  for src in "$src_dir"/*.c; do
    [ -e "$src" ] || continue
    bins+=("build/$src_dir/$(basename "$src" .c).t")
  done
  [ "${#bins[@]}" -gt 0 ] || return 77
  prove --exec '' --failures "${verbose[@]}" "${bins[@]}"
}

# suite_pgtap: pgTAP files test/sql/*.sql, through pg_prove, in database ferry_test.
suite_pgtap() {
  local files=()
  for f in test/sql/*.sql; do
    [ -e "$f" ] && files+=("$f")
  done
  [ "${#files[@]}" -gt 0 ] || return 77
  pg_prove --failures --comments "${verbose[@]}" -d ferry_test "${files[@]}"
}

# suite_extension: C programs test/extension/*.c that drive the extension through libpq.
suite_extension() {
  prove_c_tests test/extension
}

# suite_gateway: C programs test/gateway/*.c: gateway modules, and ferryd end to end.
suite_gateway() {
  prove_c_tests test/gateway
}

# suite_client: C programs test/client/*.c: libferry's unit tests (queue, rebase, results on
# SQLite files) and its end-to-end tests (a real ferryd and `ferry` CLI processes as devices).
suite_client() {
  prove_c_tests test/client
}

# suite_http: ferryd's HTTP API (test/http/run.sh): the pinned @electric-sql/client under
# Node, raw HTTP requests and bad input, nginx's cache in front; 77 without node/npm/registry.
suite_http() {
  test/http/run.sh
}

# suite_qa: the offline QA harness (test/qa, docs/testing.md): netproxy's self-test, then the
# scenario programs test/qa/s<NN>_<name>.c with real Postgres, ferryd, proxies and `ferry`
# processes. By default scenarios 1-3 and a short randomized run (11); with FERRY_QA_FULL=1
# (make test-full) all of them, longer. FERRY_QA_ONLY="s04 s11" picks programs by prefix;
# FERRY_QA_SEED=N replays a seed. Ends with a table per scenario.
suite_qa() {
  local report bins=() src name rc=0
  local default=(s01 s02 s03 s11)
  report=$(mktemp /tmp/ferry-qa-report.XXXXXX)
  export FERRY_QA_REPORT=$report
  [ -e build/test/qa/proxy_test.t ] || return 77
  bins+=(build/test/qa/proxy_test.t)
  for src in test/qa/s[0-9]*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    if [ -n "${FERRY_QA_ONLY:-}" ]; then
      [[ " $FERRY_QA_ONLY " == *" ${name%%_*} "* ]] || continue
    elif [ "${FERRY_QA_FULL:-0}" != 1 ]; then
      [[ " ${default[*]} " == *" ${name%%_*} "* ]] || continue
    fi
    bins+=("build/test/qa/$name.t")
  done
  prove --exec '' --failures "${verbose[@]}" "${bins[@]}" || rc=$?
  qa_table "$report"
  mkdir -p "$logs" && cp "$report" "$logs/qa-report.txt" || true
  rm -f "$report"
  return $rc
}

# qa_table prints the scenarios' result lines (number|name|result|sent|confirmed|dups|lost|ms|seed).
qa_table() {
  [ -s "$1" ] || { echo "qa: no scenario reported a result"; return 0; }
  printf '\n%-4s %-36s %-6s %8s %10s %11s %6s %8s  %s\n' '#' scenario result sent confirmed duplicates lost time seed
  sort -t'|' -k1,1n "$1" | while IFS='|' read -r num name res sent conf dups lost ms seed; do
    [ "$seed" = 0 ] && seed=''
    printf '%-4s %-36s %-6s %8s %10s %11s %6s %7.1fs  %s\n' "$num" "$name" "$res" "$sent" "$conf" "$dups" "$lost" \
      "$(echo "$ms" | awk '{print $1 / 1000}')" "$seed"
  done
}

# suite_fuzz: each libFuzzer target build/fuzz/<name> (from test/fuzz/<name>.c) runs for
# FERRY_FUZZ_SECONDS (default 10) from its seed corpus test/fuzz/corpus/<name>/; a crash,
# leak or sanitizer report fails the suite and leaves the reproducer in build/fuzz/.
suite_fuzz() {
  local bins=() src name rc=0
  for src in test/fuzz/*.c; do
    [ -e "$src" ] || continue
    bins+=("$(basename "$src" .c)")
  done
  [ "${#bins[@]}" -gt 0 ] || return 77
  for name in "${bins[@]}"; do
    local corpus="build/fuzz/corpus-$name"
    mkdir -p "$corpus"
    [ -d "test/fuzz/corpus/$name" ] && cp -r "test/fuzz/corpus/$name/." "$corpus/"
    echo "fuzz $name: ${FERRY_FUZZ_SECONDS:-10} s"
    if ! (cd build/fuzz && "./$name" -max_total_time="${FERRY_FUZZ_SECONDS:-10}" -print_final_stats=1 \
            "corpus-$name" >"fuzz-$name.log" 2>&1); then
      echo "not ok: $name (see build/fuzz/fuzz-$name.log)"
      tail -30 "build/fuzz/fuzz-$name.log"
      rc=1
    else
      echo "ok: $name ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "build/fuzz/fuzz-$name.log" | grep -o '[0-9]*$') runs)"
    fi
  done
  return $rc
}

# ---- setup ------------------------------------------------------------------------

mode='test'
if [ "${1:-}" = --bench ]; then
  mode=bench
  shift
fi
if [ $# -gt 0 ]; then
  for s in "$@"; do
    declare -F "suite_$s" >/dev/null || { echo "run.sh: no suite '$s' (suites: ${SUITES[*]})" >&2; exit 2; }
  done
  SUITES=("$@")
fi
if [ "$mode" = bench ] && [ ! -x bench/run.sh ]; then
  echo "run.sh: there is no bench/run.sh yet: no benchmark to run"
  exit 0
fi

step() { printf '\n==== %s ====\n' "$*"; }

logs=build/test-logs
rm -rf "$logs"
mkdir -p "$logs"

if [ "${FERRY_SKIP_DEPS:-0}" != 1 ]; then
  step "deps"
  make --no-print-directory deps
fi
step "build"
make --no-print-directory all
step "install"
make --no-print-directory install

step "cluster"
pgdir=$(mktemp -d /tmp/ferry-test.XXXXXX)
failed=0

# cleanup runs at exit, whatever happened: keeps the logs of a failed run, then
# stops and removes the cluster (unless FERRY_TEST_KEEP=1).
cleanup() {
  local rc=$?
  [ "$failed" -eq 0 ] || [ "$rc" -ne 0 ] || rc=1
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ] && [ -f "$pgdir/server.log" ]; then
    local saved
    saved="$logs/server-$(date +%Y%m%d-%H%M%S).log"
    cp "$pgdir/server.log" "$saved" || true
    printf '\n==== last 50 lines of the server log (all of it: %s) ====\n' "$saved"
    tail -n 50 "$pgdir/server.log" || true
  fi
  if [ "${FERRY_TEST_KEEP:-0}" = 1 ] && [ -f "$pgdir/data/PG_VERSION" ]; then
    printf '\nThe cluster still runs (FERRY_TEST_KEEP=1). Reach it with:\n'
    # shellcheck disable=SC2016  # printed for the reader's shell
    printf '  eval "$(test/pgcluster.sh env %s)"; psql -d ferry_test\n' "$pgdir"
    printf 'Remove it with:\n  test/pgcluster.sh stop %s\n' "$pgdir"
  else
    test/pgcluster.sh stop "$pgdir" || echo "run.sh: could not stop the cluster in $pgdir" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$mode" = bench ]; then
  export FERRY_PG_FAST=${FERRY_PG_FAST:-0}
else
  export FERRY_PG_FAST=${FERRY_PG_FAST:-1}
fi
cluster_env=$(test/pgcluster.sh start "$pgdir")
eval "$cluster_env"
export PGDATABASE=ferry_test
export FERRY_DATABASE_URL="host=$PGHOST port=$PGPORT user=$PGUSER dbname=ferry_test"
export FERRY_ROOT=$root
export FERRY_TEST_PGDIR=$pgdir
echo "PostgreSQL $(psql -X -At -d postgres -c 'SHOW server_version') in $pgdir, port $PGPORT"

step "database ferry_test"
if ! psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE ferry_test' \
   || ! psql -X -q -v ON_ERROR_STOP=1 -d ferry_test \
        -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION ferry'; then
  echo "run.sh: could not create database ferry_test with extensions pgtap and ferry" >&2
  failed=1
  exit 1
fi
echo "ferry $(psql -X -At -c "SELECT extversion FROM pg_extension WHERE extname = 'ferry'") installed in ferry_test"

if [ "$mode" = bench ]; then
  step "bench"
  bench/run.sh || failed=1
  exit "$failed"
fi

# ---- the suites ---------------------------------------------------------------------

declare -A result
passed=0 nfailed=0 skipped=0
for s in "${SUITES[@]}"; do
  step "suite $s"
  start=$SECONDS
  set +e
  "suite_$s" 2>&1 | tee "$logs/$s.log"
  rc=${PIPESTATUS[0]}
  set -e
  took=$((SECONDS - start))
  # prove and pg_prove end with "Files=N, Tests=M, ..."
  counts=$(grep -Eo '^Files=[0-9]+, Tests=[0-9]+' "$logs/$s.log" | tail -n 1 || true)
  case "$rc" in
    0) result[$s]="passed   ${counts:+($counts) }${took}s"; passed=$((passed + 1)) ;;
    77) result[$s]="skipped  (nothing to run)"; skipped=$((skipped + 1)) ;;
    *) result[$s]="FAILED   (exit $rc${counts:+, $counts}) ${took}s, log: $logs/$s.log"
       nfailed=$((nfailed + 1)); failed=1 ;;
  esac
done

step "summary"
for s in "${SUITES[@]}"; do
  printf '  %-12s %s\n' "$s" "${result[$s]}"
done
echo "suites: $passed passed, $nfailed failed, $skipped skipped"
exit "$failed"
