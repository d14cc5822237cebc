#!/bin/sh
# test.sh - `make test`: install what is missing, build with ASan+UBSan, start a throwaway
# PostgreSQL, apply migrations, run every unit and integration test, stop PostgreSQL.
# Exits non-zero on any failure.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# A merge that left its conflict markers behind fails here, before anything is built.
if grep -rIln --exclude-dir=.git --exclude-dir='build*' --exclude-dir=node_modules --exclude-dir=var --exclude-dir='corpus*' \
        -e '^<<<<<<< ' -e '^>>>>>>> ' . >/tmp/calseta-markers.$$ 2>/dev/null; then
    echo "test.sh: merge conflict markers in:" >&2
    cat /tmp/calseta-markers.$$ >&2
    rm -f /tmp/calseta-markers.$$
    exit 1
fi
rm -f /tmp/calseta-markers.$$

scripts/deps.sh
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DCALSETA_SANITIZE=ON >/dev/null
cmake --build build-test -j"$(nproc)"

TMPDATA=$(mktemp -d /tmp/calseta-test.XXXXXX)
chmod 755 "$TMPDATA"
export CALSETA_DATA_DIR="$TMPDATA"
cleanup() {
    scripts/pg.sh stop || true
    rm -rf "$TMPDATA"
}
trap cleanup EXIT INT TERM
DATABASE_URL=$(PG_FSYNC=off scripts/pg.sh start)
export DATABASE_URL
build-test/bin/calseta migrate >/dev/null

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# No LeakSanitizer suppressions: the suite runs clean without any, and a suppression for a
# third-party library (libzmq, libpq, libuv) would hide our own leaks through it too.
unset LSAN_OPTIONS
ctest --test-dir build-test --output-on-failure -j2 --timeout 600
