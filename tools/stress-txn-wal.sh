#!/usr/bin/env bash
# Runs the long variant of the txn-wal stress test (TxnsHandleTests.stressCorrectness over
# memory, FileBlob+LogConsensus and unreliable storage) for consecutive seeds, stopping at
# the first failure. Usage: tools/stress-txn-wal.sh [SEEDS] [FIRST_SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-20}"
first="${2:-1}"
swift build --build-tests >/dev/null
bin=$(swift build --show-bin-path)/swift-txn-walPackageTests.xctest
for ((seed = first; seed < first + seeds; seed++)); do
    start=$(date +%s)
    if ! TXN_WAL_STRESS_LONG=1 TXN_WAL_STRESS_SEED=$seed "$bin" --testing-library swift-testing \
        --filter 'TxnsHandleTests/stressCorrectness' >"/tmp/txn-wal-stress-$seed.log" 2>&1; then
        echo "seed $seed: FAILED (log: /tmp/txn-wal-stress-$seed.log)"
        grep -E '✘|error' "/tmp/txn-wal-stress-$seed.log" | head -20
        exit 1
    fi
    echo "seed $seed: passed in $(($(date +%s) - start)) s ($(grep -o 'max_ts [0-9]*, [0-9]* reads, faults injected: [0-9]*' "/tmp/txn-wal-stress-$seed.log" | tr '\n' ';'))"
done
echo "all $seeds seeds passed"
