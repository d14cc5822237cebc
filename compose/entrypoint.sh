#!/bin/sh
# entrypoint.sh - the image's entry point for every role: refuses to start without
# ENCRYPTION_KEY (credentials are stored encrypted with it; a stack without it would only fail
# later, at the first provider or agent saved), then runs `calseta ARGS` (up [SERVICE...],
# migrate, create-api-key, ...) or a calseta-* program directly.
#
# Nothing else happens here, so `docker compose exec <role> calseta ...` behaves exactly like
# the role itself: the database URL is built by the programs from POSTGRES_* (password
# percent-encoded), and the ZeroMQ CURVE keys live in the shared `curve` volume.
set -eu

if [ -z "${ENCRYPTION_KEY:-}" ]; then
    echo "calseta: ENCRYPTION_KEY is not set. Generate one with: openssl rand -base64 32 | tr '+/' '-_'" >&2
    echo "calseta: put it in compose/calseta.env and keep a copy with your backups." >&2
    exit 64
fi

case "${1:-up}" in
calseta-*) exec "$@" ;;
*) exec calseta "$@" ;;
esac
