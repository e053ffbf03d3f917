#!/usr/bin/env bash
# test/pgcluster.sh -- start, inspect and stop a private PostgreSQL 15 cluster in a directory.
#
#   test/pgcluster.sh start DIR    create the cluster in DIR/data (or reuse the one there),
#                                  start it, print `export` lines for the caller's shell
#   test/pgcluster.sh env DIR      print the `export` lines of a running cluster
#   test/pgcluster.sh status DIR   say whether it runs; exit 0 running, 3 stopped, 4 no cluster
#   test/pgcluster.sh halt DIR     stop the server, keep DIR (start resumes it)
#   test/pgcluster.sh stop DIR     stop the server and remove DIR
#
# Use it as:   out=$(test/pgcluster.sh start "$dir") && eval "$out"
# (a bare `eval "$(... start ...)"` would hide a failed start).
#
# The cluster listens on no TCP address, only on a Unix socket in DIR, on a free port
# picked at creation (kept in postgresql.conf), with wal_level = logical for the
# gateway. Role postgres, trust auth (replication connections too). The server log is
# DIR/server.log. Run as root, it runs the server as user postgres (DIR is chowned to
# it); otherwise as the caller.
#
# Environment:
#   FERRY_PG_BIN    server binaries (default /usr/lib/postgresql/15/bin)
#   FERRY_PG_CONF   extra postgresql.conf lines, appended when the cluster is created
#   FERRY_PG_FAST=1 fsync = off (throwaway clusters only: a crash loses the data)
set -euo pipefail

PG_BIN=${FERRY_PG_BIN:-/usr/lib/postgresql/15/bin}

die() { echo "pgcluster: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 start|env|status|halt|stop DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2
[ -n "$dir" ] || usage

# as_owner runs a command as the cluster's owner: postgres when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# abs_dir prints DIR as an absolute path (DIR need not exist).
abs_dir() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd)" "$1" ;;
  esac
}

# conf_port prints the port the cluster in DIR was created with.
conf_port() {
  sed -n -E 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' \
    "$dir/data/postgresql.conf" | tail -n 1
}

# postmaster_pid prints the pid from DIR/data/postmaster.pid when that process is this
# cluster's postmaster and is not a zombie (PID 1 in containers may be slow to reap a
# stopped postmaster; a zombie counts as stopped).
postmaster_pid() {
  local pidfile=$dir/data/postmaster.pid pid state
  [ -r "$pidfile" ] || return 1
  pid=$(head -n 1 "$pidfile" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/stat" ] || return 1
  # Field 3 of /proc/PID/stat is the state; field 2, the command, is in parentheses.
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ] || return 1
  # After a reboot the pid may belong to another process: it must be our postmaster.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $dir/data" || return 1
  printf '%s\n' "$pid"
}

is_running() { postmaster_pid >/dev/null; }

# port_is_free: nothing listens on TCP port $1 on loopback, and no socket file for it in DIR.
port_is_free() {
  local port=$1
  [ ! -e "$dir/.s.PGSQL.$port" ] || return 1
  # A connect that succeeds means the port is taken.
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    return 1
  fi
  return 0
}

# pick_port prints a free port in 20000..29999.
pick_port() {
  local i port
  for i in $(seq 1 50); do
    port=$((20000 + (RANDOM * 32768 + RANDOM + $$ + i) % 10000))
    if port_is_free "$port"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  die "no free port found in 20000..29999"
}

print_env() {
  local port
  port=$(conf_port)
  [ -n "$port" ] || die "no port in $dir/data/postgresql.conf"
  printf 'export PGHOST=%q\n' "$dir"
  printf 'export PGPORT=%q\n' "$port"
  printf 'export PGUSER=postgres\n'
  printf 'export FERRY_DATABASE_URL=%q\n' "host=$dir port=$port user=postgres dbname=postgres"
}

create_cluster() {
  local port
  [ -x "$PG_BIN/initdb" ] || die "no $PG_BIN/initdb: install postgresql-15 (make deps)"
  mkdir -p "$dir"
  if [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    die "$dir is not empty and holds no cluster (no $dir/data/PG_VERSION)"
  fi
  if [ "$(id -u)" -eq 0 ]; then
    getent passwd postgres >/dev/null || die "user postgres does not exist: install postgresql-15 (make deps)"
    chmod 755 "$dir"
    chown postgres:postgres "$dir"
    runuser -u postgres -- test -w "$dir" \
      || die "user postgres cannot write $dir: every parent directory must be searchable by it (chmod o+x), or choose a directory under /tmp"
  fi
  if ! as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
       --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    die "initdb failed in $dir/data"
  fi
  port=$(pick_port)
  {
    echo ""
    echo "# ---- added by test/pgcluster.sh ----"
    echo "listen_addresses = ''"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "wal_level = logical"
    echo "max_wal_senders = 10"
    echo "max_replication_slots = 10"
    echo "shared_buffers = 128MB"
    if [ "${FERRY_PG_FAST:-0}" = 1 ]; then
      echo "fsync = off"
    fi
    if [ -n "${FERRY_PG_CONF:-}" ]; then
      echo "# FERRY_PG_CONF"
      printf '%s\n' "$FERRY_PG_CONF"
    fi
  } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
}

start() {
  local port
  # The socket path DIR/.s.PGSQL.NNNNN must fit in sun_path (107 bytes).
  [ $(( ${#dir} + 15 )) -le 107 ] \
    || die "$dir is too long for a Unix socket path: choose a shorter directory"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    create_cluster
  elif is_running; then
    print_env
    return 0
  fi
  port=$(conf_port)
  # A postmaster.pid left by a server that is gone (or a zombie) would block the start.
  as_owner rm -f "$dir/data/postmaster.pid" "$dir/.s.PGSQL.$port" "$dir/.s.PGSQL.$port.lock"
  if ! as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
       >"$dir/pg_ctl.log" 2>&1; then
    cat "$dir/pg_ctl.log" >&2
    echo "---- last lines of $dir/server.log ----" >&2
    tail -n 50 "$dir/server.log" >&2 2>/dev/null || true
    die "the server in $dir/data did not start"
  fi
  print_env
}

halt() {
  local pid i
  [ -f "$dir/data/PG_VERSION" ] || return 0
  is_running || return 0
  as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  # pg_ctl may give up while the postmaster lingers as a zombie, which counts as
  # stopped; a postmaster that is really still there gets an immediate stop, then KILL.
  for i in $(seq 1 50); do
    is_running || return 0
    if [ "$i" -eq 25 ]; then
      as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    fi
    sleep 0.2
  done
  if pid=$(postmaster_pid); then
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    if is_running; then
      die "the server in $dir/data (pid $pid) does not stop"
    fi
  fi
}

dir=$(abs_dir "$dir")
dir=${dir%/}
case "$cmd" in
  start) start ;;
  env)
    is_running || die "no server runs in $dir"
    print_env
    ;;
  status)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      echo "no cluster in $dir"
      exit 4
    elif pid=$(postmaster_pid); then
      echo "running in $dir (pid $pid, port $(conf_port))"
    else
      echo "stopped: $dir"
      exit 3
    fi
    ;;
  halt) halt ;;
  stop)
    halt
    [ -e "$dir" ] || exit 0
    # Remove only what this script made: a cluster, a failed attempt, or nothing.
    if [ -f "$dir/data/PG_VERSION" ] || [ -f "$dir/initdb.log" ] || [ -z "$(ls -A "$dir")" ]; then
      rm -rf "$dir"
    else
      die "$dir does not look like a pgcluster directory: not removing it"
    fi
    ;;
  *) usage ;;
esac
