#!/usr/bin/env bash
# The main job: set up a fresh machine, build in release mode, start the local cluster
# (blob-store, consensus, txn-coordinator; deploy/cluster.toml), drive it with the load
# generator for a short while (list-append transactions across shards, then transfers
# between bank accounts), verify the result (the list-append history with the
# independent checker, the bank total online, the stored state with txn-verify) and
# print the summary. The cluster is stopped at the end unless KEEP_CLUSTER=1.
#
# Usage: tools/run.sh
#   DURATION=20 (seconds per workload)  CLIENTS=16  SHARDS=4  SEED=1  KEEP_CLUSTER=0
# The benchmarks are separate: .build/release/persist-bench --help (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh

echo "== build (release)"
swift build -c release 2>&1 | grep -E "error|warning: |Compiling|Build complete" | grep -v Compiling || true
bin=.build/release
for tool in blob-store consensus txn-coordinator txnctl loadgen txn-verify; do
    [ -x "$bin/$tool" ] || { echo "run: $bin/$tool was not built" >&2; exit 1; }
done
export TXNWAL_BIN_DIR="$PWD/$bin"
cluster=(python3 tools/cluster/cluster.py)
data_dir=$(python3 -c 'import sys; sys.path.insert(0, "tools/cluster"); import cluster; print(cluster.Config.load(cluster.DEFAULT_CONFIG).data_dir)')
run_dir="$data_dir/runs/$(date +%Y%m%d-%H%M%S)"

stop_cluster() {
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
        echo "run: the cluster keeps running (tools/cluster/cluster.py status | down)"
    else
        "${cluster[@]}" down
    fi
}
trap stop_cluster EXIT

echo "== start the local cluster"
"${cluster[@]}" up
"${cluster[@]}" status
mkdir -p "$run_dir"
client=(--coordinator "unix:$data_dir/run/txn-coordinator.sock" --token-file "$data_dir/secrets/coordinator.token")
duration=${DURATION:-20}
common=(--duration "$duration" --clients "${CLIENTS:-16}" --shards "${SHARDS:-4}" --seed "${SEED:-1}")

echo "== load: list-append transactions for ${duration} s (progress each second)"
"$bin/loadgen" list-append "${client[@]}" "${common[@]}" \
    --history "$run_dir/history.jsonl" --summary "$run_dir/list-append.json" >/dev/null

echo "== load: bank transfers for ${duration} s (the total is checked as it runs)"
"$bin/loadgen" bank "${client[@]}" "${common[@]}" --summary "$run_dir/bank.json" >/dev/null

echo "== verify: the history (strict serializability, lost or duplicated appends, ...)"
python3 tools/checker/check.py "$run_dir/history.jsonl"

echo "== verify: stored state (referenced blobs exist; shards equal the replay of committed txns)"
read -r key_id secret < <(grep -v '^#' "$data_dir/secrets/blob-store.credentials" | head -n1)
urls=$(python3 -c 'import sys; sys.path.insert(0, "tools/cluster"); import cluster as c; print(*c.Cluster(c.Config.load(c.DEFAULT_CONFIG)).storage_urls())')
read -r blob_url consensus_url <<<"$urls"
AWS_ACCESS_KEY_ID=$key_id AWS_SECRET_ACCESS_KEY=$secret \
    "$bin/txn-verify" check --blob "$blob_url" --consensus "$consensus_url" --require-applied

echo "== summary"
python3 - "$run_dir" <<'EOF'
import json, sys
run = sys.argv[1]
for name in ("list-append", "bank"):
    s = json.load(open(f"{run}/{name}.json"))
    c, lat = s["counts"]["total"], s["latency_ms"]
    print(f"{name:12} {s['throughput']['txns_per_second']:8.0f} txn/s  ok {c['ok']}  fail {c['fail']}  "
          f"info {c['info']}  p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms")
    if name == "bank":
        b = s["bank"]
        print(f"{'':12} total checked {b['invariant_checks']} times: {len(b['violations'])} violations")
print(f"history, summaries: {run}")
EOF
