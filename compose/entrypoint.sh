#!/bin/sh
# entrypoint.sh - the image's entry point for every role.
#
# - ENCRYPTION_KEY is required: credentials are stored encrypted with it, and a stack started
#   without it would fail later, at the first provider or agent saved.
# - DATABASE_URL, when not given, is built from POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and
#   POSTGRES_HOST with the password percent-encoded (any character may appear in it).
# - The CURVE key pair in the shared keys volume (made by the `migrate` role at first start,
#   CALSETA_INIT_CURVE_KEYS=1) is loaded, so every ZeroMQ link between containers is encrypted
#   and the servers are authenticated.
# Then it runs `calseta ARGS` (up [SERVICE...], migrate, create-api-key, ...) or a program named
# calseta-* directly.
set -eu

die() { echo "calseta: $*" >&2; exit 64; }

[ -n "${ENCRYPTION_KEY:-}" ] ||
    die "ENCRYPTION_KEY is not set. Generate one with: openssl rand -base64 32 | tr '+/' '-_'  (or 'calseta gen-encryption-key'), put it in compose/calseta.env and keep a copy with your backups."

pct() { printf %s "$1" | od -An -tx1 -v | tr -d ' \n' | sed 's/../%&/g'; }

if [ -z "${DATABASE_URL:-}" ]; then
    [ -n "${POSTGRES_PASSWORD:-}" ] || die "set DATABASE_URL, or POSTGRES_PASSWORD (with POSTGRES_HOST, POSTGRES_USER, POSTGRES_DB)"
    DATABASE_URL="postgresql://$(pct "${POSTGRES_USER:-calseta}"):$(pct "$POSTGRES_PASSWORD")@${POSTGRES_HOST:-db}:${POSTGRES_PORT:-5432}/${POSTGRES_DB:-calseta}"
    export DATABASE_URL
fi

KEYS=${CALSETA_KEYS_DIR:-/var/lib/calseta/keys}
# The role that starts first (migrate) makes the key pair once; the others only read it.
if [ "${CALSETA_INIT_CURVE_KEYS:-0}" = 1 ] && [ ! -s "$KEYS/curve.env" ]; then
    umask 077
    calseta gen-curve-keys >"$KEYS/curve.env.new"
    mv "$KEYS/curve.env.new" "$KEYS/curve.env"
fi
if [ -r "$KEYS/curve.env" ]; then
    set -a
    . "$KEYS/curve.env"
    set +a
fi

case "${1:-up}" in
calseta-*) exec "$@" ;;
*) exec calseta "$@" ;;
esac
