#!/usr/bin/env bash
# The main job at this stage: set up a fresh machine, build in release mode, and run the
# storage benchmark on the embedded engine (LogConsensus on local disk) and on the
# consensus server process over loopback TCP (RemoteConsensus), beside PostgreSQL 15,
# which the benchmark starts and stops itself. Prints the figures and their ratios.
# Usage: tools/run.sh [extra persist-bench flags for the consensus run, e.g. --backends log,remote,remote-unix]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# persist-bench depends on the consensus server target, so this builds `consensus` too;
# the explicit second build makes sure of it and costs nothing when it is up to date.
swift build -c release --product persist-bench
swift build -c release --product consensus
bench=.build/release/persist-bench
probe=../shared/tools/fsync-probe
[ -x "$probe" ] && "$probe" /tmp 2 || echo "(fsync-probe not found at $probe; skipping)"
"$bench" crc
"$bench" compression --seconds 1
"$bench" consensus --duration "${DURATION:-5}" "$@"
[ -x "$probe" ] && "$probe" /tmp 2 || true
