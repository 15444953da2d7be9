#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite: a clean build that must have no
# warnings in our own code, a short fuzzing run of the decoders, the Python tests (history
# checker, cluster launcher), every Swift test, and the crash tests: the local cluster
# (kill -9 and failpoints under load, two seeds, about two minutes) and the coordinator
# on PostgreSQL + moto S3 (two more seeds, about two minutes).
# Usage: tools/test.sh   (FUZZ_SECONDS=0 skips fuzzing; CRASH_SEEDS=1,2 and
#                         CRASH_SECONDS=40 shape the crash test, CRASH_SEEDS=none skips it
#                         and its self-test; CRASH_PG_SEEDS likewise for the pg-s3 one
#                         and its self-test)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh

echo "== build (debug, with tests)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! swift build --build-tests >"$log" 2>&1; then
    cat "$log"
    echo "build failed" >&2
    exit 1
fi
# Warnings in our own sources fail the run (dependencies' warnings are not ours).
if grep -E "^$PWD/(Sources|Tests|tools)/.*warning:" "$log"; then
    echo "warnings in our code (above)" >&2
    exit 1
fi

echo "== fuzz decoders"
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
    if ! bash tools/fuzz-codec.sh "${FUZZ_SECONDS:-30}" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzzing found a problem (reproducer in tools/fuzz/out/)" >&2
        exit 1
    fi
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|fuzz-codec:)' "$log" || true
fi

echo "== python tests (tools/checker, tools/cluster, tools/crashtest)"
export TXNWAL_BIN_DIR="$PWD/.build/debug"
if ! python3 -m pytest -q -p no:cacheprovider tools/checker tools/cluster tools/crashtest >"$log" 2>&1; then
    cat "$log"
    echo "the Python tests failed" >&2
    exit 1
fi
tail -n 1 "$log"

echo "== crash tests (tools/crashtest: kill -9 and failpoints under load, then checks; then on PostgreSQL + S3)"
if [ "${CRASH_SEEDS:-1,2}" != none ]; then
    python3 tools/crashtest/crashtest.py --seeds "${CRASH_SEEDS:-1,2}" --duration "${CRASH_SECONDS:-40}" \
        --bin-dir "$PWD/.build/debug"
    # The crash test's own test: servers run with deliberate bugs, each must be caught.
    python3 tools/crashtest/crashtest.py --self-test --duration 20 --bin-dir "$PWD/.build/debug"
fi
if [ "${CRASH_PG_SEEDS:-1,2}" != none ]; then
    # The same checks with the coordinator on PostgreSQL (consensus) and a moto S3 server
    # (blob), crash-stopping PostgreSQL as well as killing the coordinator.
    python3 tools/crashtest/crashtest.py --backend pg-s3 --seeds "${CRASH_PG_SEEDS:-1,2}" \
        --duration "${CRASH_SECONDS:-40}" --bin-dir "$PWD/.build/debug"
    python3 tools/crashtest/crashtest.py --backend pg-s3 --self-test --duration 20 --bin-dir "$PWD/.build/debug"
fi

echo "== swift test"
status=0
swift test --skip-build >"$log" 2>&1 || status=$?
# Every failure in full, then the suite results, then Swift Testing's closing line last.
# (The XCTest runner's "Executed 0 tests" line is left out: every test here is a Swift
# Testing test.)
grep -E '✘|error:|Fatal|fatal' "$log" | head -n 200 || true
grep -E '^. Suite ' "$log" | tail -n 80 || true
summary=$(grep -E '^. Test run with [0-9]+ tests' "$log" | tail -n 1)
echo "$summary"
if [ "$status" != 0 ] || [ -z "$summary" ]; then
    echo "swift test failed (exit $status)" >&2
    exit 1
fi
# A plain closing line: N passed, 0 failed.
echo "$summary" | sed -E 's/.*Test run with ([0-9]+) tests.*/\1 passed, 0 failed/'
