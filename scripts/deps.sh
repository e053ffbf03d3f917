#!/usr/bin/env bash
# scripts/deps.sh -- install the Debian packages ferry needs to build, test and run.
#
# The one list of the project's system packages. Cheap when everything is
# installed (one dpkg-query, no apt-get); otherwise installs what is missing,
# as root or through sudo. Installs postgresql-common first and turns off
# create_main_cluster, so installing postgresql-15 creates no "main" cluster:
# the tests and `make run` start their own clusters (test/pgcluster.sh).
#
#   scripts/deps.sh          install what is missing
#   scripts/deps.sh --list   print the package list
#   scripts/deps.sh --check  exit 1 (and name them) when packages are missing
set -euo pipefail

PACKAGES=(
  build-essential pkg-config                        # compiler, make, pkg-config
  postgresql-15 postgresql-server-dev-15 libpq-dev  # server, PGXS headers, libpq
  postgresql-contrib                                # pgbench (bench/)
  postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl  # pgTAP, pg_prove
  libwebsockets-dev                                 # gateway: HTTP + WebSocket
  libprotobuf-c-dev protobuf-c-compiler             # wire protocol (proto/)
  libpg-query-dev                                   # gateway: WHERE parsing
  clang libclang-rt-14-dev                          # libFuzzer and sanitizer runtimes (test/fuzz)
  libjwt-dev libjansson-dev libssl-dev              # gateway: JWT auth
  libsqlite3-dev sqlite3                            # client store
  openssl ca-certificates                           # client wss://: the system's trust store; test certificates
  nodejs nginx-light curl                           # HTTP API tests: the Electric client under Node, nginx's cache
)

# missing_packages prints the packages of "$@" that are not installed.
missing_packages() {
  local installed
  # dpkg-query exits 1 when some package is unknown; its output still lists the known ones.
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true)
  local p
  for p in "$@"; do
    grep -qx "$p installed" <<<"$installed" || printf '%s\n' "$p"
  done
}

case "${1:-}" in
  --list) printf '%s\n' "${PACKAGES[@]}"; exit 0 ;;
  --check|"") ;;
  *) echo "usage: $0 [--list|--check]" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null; then
  echo "deps: this is not a Debian-based system; install by hand: ${PACKAGES[*]}" >&2
  exit 1
fi

mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "${1:-}" = --check ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: not root and no sudo: install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_install=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive
             apt-get install -y -q --no-install-recommends)
"${as_root[@]}" apt-get update -q

# postgresql-common first, and no main cluster from the server package.
conf=/etc/postgresql-common/createcluster.conf
if [ -n "$(missing_packages postgresql-common)" ]; then
  "${apt_install[@]}" postgresql-common
fi
if ! grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*false' "$conf" 2>/dev/null; then
  "${as_root[@]}" sed -i -E '/^[[:space:]]*#?[[:space:]]*create_main_cluster[[:space:]]*=/d' "$conf"
  echo "create_main_cluster = false" | "${as_root[@]}" tee -a "$conf" >/dev/null
fi

"${apt_install[@]}" "${missing[@]}"

mapfile -t still < <(missing_packages "${PACKAGES[@]}")
if [ "${#still[@]}" -gt 0 ]; then
  echo "deps: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
