#!/usr/bin/env bash
# Installs everything a fresh Debian machine needs to build, test and benchmark
# swift-txn-wal: the compression libraries the package links, pkg-config to find them,
# PostgreSQL 15 (the benchmark's peer; the benchmark starts its own server) with
# pgbench, and the zstd/lz4 command-line tools used as compression peers.
# Idempotent: it only installs what is missing. Needs root (or sudo) for apt.
set -euo pipefail

packages=(libzstd-dev liblz4-dev pkg-config zstd lz4 postgresql-15 procps util-linux)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages the tools and tests need, pinned in tools/requirements.txt: boto3 (the
# S3 compatibility check of blob-store), moto[server] (the independent S3 the S3Blob tests
# start), pytest and hypothesis (the Python tests), networkx (the history checker) and
# matplotlib (the benchmark plot).
if [ -s tools/requirements.txt ]; then
    python3 -m pip install -q -r tools/requirements.txt
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.1+ is required)" >&2; exit 1; }
echo "setup: ok ($(swift --version 2>/dev/null | head -n1))"
