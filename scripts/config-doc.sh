#!/bin/sh
# config-doc.sh - regenerates docs/configuration.md from the settings table
# (libcommon/config/settings_table.c) with `calseta settings-doc`. Run it after adding or
# changing a setting; tests/integration/test_settings_doc.py fails while the file is stale.
# Uses the build of CALSETA_BIN_DIR when set, else build/ (configured and built as needed).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ -n "${CALSETA_BIN_DIR:-}" ]; then
    BUILD=$(dirname "$CALSETA_BIN_DIR")
else
    BUILD=build
    [ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" --target calseta -j2 >/dev/null
mkdir -p docs
"$BUILD/bin/calseta" settings-doc >docs/configuration.md.new
mv docs/configuration.md.new docs/configuration.md
echo "docs/configuration.md regenerated"
