#!/bin/sh
# fuzz.sh - `make fuzz`: build every libFuzzer target in tests/fuzz/ with clang and run each
# for FUZZ_SECONDS (default 60) over its seed corpus, or for FUZZ_RUNS executions when that is set
# (FUZZ_RUNS=10000000 for a release). FUZZ_TARGETS="a b" runs those targets only, in that order.
# On a shared machine run it as `chrt -i 0 nice -n 19 make fuzz`. Findings (crash-*, leak-*,
# timeout-*) are written to build-fuzz/findings/<target>/, the target's whole output to fuzz.log.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/deps.sh
CC=clang cmake -S . -B build-fuzz -DCALSETA_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)"
secs=${FUZZ_SECONDS:-60}
if [ -n "${FUZZ_RUNS:-}" ]; then
    limit="-runs=$FUZZ_RUNS"
    what="$FUZZ_RUNS executions"
else
    limit="-max_total_time=$secs"
    what="${secs}s"
fi
status=0
# FUZZ_TARGETS are run in the order given (the one furthest behind first); a name that is not a
# target is an error rather than a run that silently fuzzed nothing
names=${FUZZ_TARGETS:-$(for b in build-fuzz/bin/fuzz_*; do echo "${b##*/fuzz_}"; done)}
for name in $names; do
    bin="build-fuzz/bin/fuzz_$name"
    if [ ! -x "$bin" ]; then
        echo "fuzz.sh: no fuzz target $name (tests/fuzz/$name.c)" >&2
        exit 2
    fi
    corpus="tests/fuzz/corpus/$name"
    work="build-fuzz/corpus/$name"
    out="build-fuzz/findings/$name"
    mkdir -p "$work" "$out"
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
    echo "== $name ($what)"
    # the whole output is kept: a run stopped from outside (timeout) leaves its progress there
    if ! "$bin" "$limit" -artifact_prefix="$out/" -print_final_stats=1 "$work" 2>&1 |
        tee "$out/fuzz.log" |
        grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|==.*ERROR|SUMMARY)"; then
        :
    fi
    if ls "$out"/crash-* "$out"/leak-* >/dev/null 2>&1; then
        echo "   findings in $out"
        status=1
    fi
done
exit $status
