#!/bin/sh
# run.sh - `make run`: install what is missing, build, start PostgreSQL (embedded unless
# DATABASE_URL is set), apply migrations, and run `calseta up` in the foreground.
# Ctrl-C stops every service, then the embedded PostgreSQL.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

export CALSETA_DATA_DIR="${CALSETA_DATA_DIR:-$ROOT/var}"
mkdir -p "$CALSETA_DATA_DIR"
EMBEDDED=0
if [ -z "${DATABASE_URL:-}" ]; then
    EMBEDDED=1
    DATABASE_URL=$(scripts/pg.sh start)
    export DATABASE_URL
    trap 'scripts/pg.sh stop' EXIT INT TERM
fi
build/bin/calseta migrate

# Provider credentials are stored encrypted; a stack without ENCRYPTION_KEY gets one of its own,
# kept beside its data (mode 600) so it survives restarts.
if [ -z "${ENCRYPTION_KEY:-}" ] && ! grep -qs '^ *\(export \)\?ENCRYPTION_KEY=.' .env; then
    KEYFILE="$CALSETA_DATA_DIR/encryption.key"
    if [ ! -s "$KEYFILE" ]; then
        (umask 077 && build/bin/calseta gen-encryption-key >"$KEYFILE")
        echo "ENCRYPTION_KEY was not set: generated one in $KEYFILE (back it up with the data)"
    fi
    ENCRYPTION_KEY=$(cat "$KEYFILE")
    export ENCRYPTION_KEY
fi

HOST=${HTTP_HOST:-127.0.0.1}
PORT=${HTTP_PORT:-8000}
SCHEME=http
[ -n "${TLS_CERT_FILE:-}" ] && SCHEME=https
echo
echo "Calseta is starting on $SCHEME://$HOST:$PORT  (health: $SCHEME://$HOST:$PORT/health)"
if [ "$EMBEDDED" = 1 ]; then
    echo "Embedded PostgreSQL: data in $CALSETA_DATA_DIR (URL: CALSETA_DATA_DIR=$CALSETA_DATA_DIR scripts/pg.sh url)"
    echo "First admin key (in another terminal, from $ROOT):"
    echo "    CALSETA_DATA_DIR=$CALSETA_DATA_DIR build/bin/calseta create-api-key --name admin --scopes admin"
else
    echo "First admin key:  build/bin/calseta create-api-key --name admin --scopes admin   (with DATABASE_URL set)"
fi
echo "Press Ctrl-C to stop everything."
echo
set +e
build/bin/calseta up
rc=$?
exit $rc
