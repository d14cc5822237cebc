#!/bin/sh
# pg.sh - the project's embedded PostgreSQL: a cluster in $CALSETA_DATA_DIR/pg (default var/),
# listening on a unix socket and a free loopback port, password-protected (scram), owned by an
# unprivileged user when run as root.
#
#   pg.sh start   initialise if needed, start, create the calseta database, print DATABASE_URL
#   pg.sh stop    fast shutdown
#   pg.sh url     print DATABASE_URL of the running cluster
#   pg.sh status
#
# PG_FSYNC=off starts it without fsync (throwaway test clusters only).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${CALSETA_DATA_DIR:-$ROOT/var}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] || { echo "pg.sh: PostgreSQL server binaries not found (run scripts/deps.sh)" >&2; exit 1; }

RUNAS=""
PGUSER_OS=$(id -un)
if [ "$(id -u)" = 0 ]; then
    PGUSER_OS=postgres
    RUNAS="runuser -u postgres --"
fi

# The cluster lives under the data folder when the server's user can reach it; otherwise
# (a checkout under a private home folder) in a folder of its own under /var/tmp.
PGDATA="$DATA/pg"
if [ -n "$RUNAS" ] && ! $RUNAS test -x "$DATA" 2>/dev/null; then
    PGDATA="/var/tmp/calseta-pg-$(printf %s "$DATA" | md5sum | cut -c1-12)"
    echo "$PGDATA" >"$DATA/pg.location"
fi
SOCK="$PGDATA/run"
PORTFILE="$DATA/pg.port"
PWFILE="$DATA/pg.password"
# The server writes its log itself, as its own user: beside a relocated cluster when it cannot
# enter the data folder.
LOG="$DATA/pg.log"
[ "$PGDATA" = "$DATA/pg" ] || LOG="$PGDATA.log"

run() { $RUNAS "$@"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

url() {
    printf 'postgresql://calseta:%s@127.0.0.1:%s/calseta\n' "$(cat "$PWFILE")" "$(cat "$PORTFILE")"
}

init() {
    [ -f "$PGDATA/PG_VERSION" ] && return 0
    mkdir -p "$PGDATA"
    umask 077
    [ -f "$PWFILE" ] || python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$PWFILE"
    chmod 600 "$PWFILE"
    tmppw=$(mktemp)
    cat "$PWFILE" >"$tmppw"
    if [ -n "$RUNAS" ]; then chown postgres "$PGDATA" "$tmppw"; fi
    run "$BIN/initdb" -D "$PGDATA" -U calseta --pwfile="$tmppw" --auth=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$DATA/initdb.log" 2>&1 ||
        { rm -f "$tmppw"; cat "$DATA/initdb.log" >&2; exit 1; }
    rm -f "$tmppw"
    run mkdir -p "$SOCK"
    cat >>"$PGDATA/postgresql.conf" <<CONF
# calseta embedded cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
max_connections = 300
shared_buffers = 256MB
wal_buffers = 16MB
commit_delay = 0
log_min_messages = warning
CONF
}

start() {
    init
    if run "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        url
        return 0
    fi
    port=""
    [ -f "$PORTFILE" ] && port=$(cat "$PORTFILE")
    if [ -z "$port" ] || ! python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',$port))" 2>/dev/null; then
        port=$(free_port)
    fi
    echo "$port" >"$PORTFILE"
    fsync=${PG_FSYNC:-on}
    : >"$LOG"
    [ -n "$RUNAS" ] && chown postgres "$LOG"
    run "$BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 60 \
        -o "-p $port -c fsync=$fsync -c synchronous_commit=$fsync -c full_page_writes=$fsync" \
        start >/dev/null || { cat "$LOG" >&2; exit 1; }
    export PGPASSWORD
    PGPASSWORD=$(cat "$PWFILE")
    if ! psql -h 127.0.0.1 -p "$port" -U calseta -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='calseta'" | grep -q 1; then
        psql -h 127.0.0.1 -p "$port" -U calseta -d postgres -qc "CREATE DATABASE calseta" >/dev/null
    fi
    url
}

stop() {
    [ -f "$PGDATA/PG_VERSION" ] || return 0
    run "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
start) start ;;
stop) stop ;;
url) url ;;
status) run "$BIN/pg_ctl" -D "$PGDATA" status ;;
*) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
