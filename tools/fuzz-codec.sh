#!/usr/bin/env bash
# Fuzzes every PersistCodec decoder with libFuzzer for SECONDS (default 60).
#
#   tools/fuzz-codec.sh [SECONDS]
#
# The harness is built with swiftc directly, not SwiftPM (an executable target brings its
# own main, which hides libFuzzer's; DESIGN.md §9). PersistCore and PersistCodec are
# compiled as separate modules, with coverage and AddressSanitizer, exactly as the package
# splits them, so the sources need no changes to be fuzzed.
#
# Replaying a reproducer: set SWIFT_BACKTRACE=enable=no as this script does.
#
# Inputs start from the committed seeds in tools/fuzz/seeds/ (valid encodings of each
# format); new interesting inputs accumulate in tools/fuzz/corpus-run/ between runs.
# A crash or failed round trip stops the run, leaves the reproducer in tools/fuzz/out/,
# and makes this script exit non-zero. Replay one with:
#   .build/fuzz/fuzz-decoders tools/fuzz/out/crash-<hash>
#
# Set SWIFT_BUILD_LOCK to a lock file to serialize the compile steps with other builds
# (flock is used when it is set).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then  # libFuzzer reads 0 as "no limit"
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/.build/fuzz"
seeds="$root/tools/fuzz/seeds"
corpus="$root/tools/fuzz/corpus-run"
artifacts="$root/tools/fuzz/out"
mkdir -p "$build" "$corpus" "$artifacts"

run_locked() {
    if [[ -n "${SWIFT_BUILD_LOCK:-}" ]]; then
        flock "$SWIFT_BUILD_LOCK" "$@"
    else
        "$@"
    fi
}

flags=(-O -sanitize=fuzzer,address -parse-as-library)

echo "fuzz-codec: building $build/fuzz-decoders" >&2
run_locked swiftc "${flags[@]}" -wmo -c -module-name PersistCore \
    -emit-module -emit-module-path "$build/PersistCore.swiftmodule" \
    "$root"/Sources/PersistCore/*.swift -o "$build/PersistCore.o"
# PersistCodec's C dependency (hardware CRC32C), found through its module map.
run_locked clang -O2 -fsanitize=fuzzer-no-link,address -c "$root/Sources/CCRC32C/ccrc32c.c" \
    -I "$root/Sources/CCRC32C/include" -o "$build/CCRC32C.o"
run_locked swiftc "${flags[@]}" -wmo -c -module-name PersistCodec -I "$build" \
    -I "$root/Sources/CCRC32C/include" \
    -emit-module -emit-module-path "$build/PersistCodec.swiftmodule" \
    "$root"/Sources/PersistCodec/*.swift -o "$build/PersistCodec.o"
# lld: the default gold linker warns about every sanitizer helper symbol.
run_locked swiftc "${flags[@]}" -module-name FuzzDecoders -I "$build" -I "$root/Sources/CCRC32C/include" -use-ld=lld \
    "$root/tools/fuzz/FuzzDecoders.swift" "$build/PersistCore.o" "$build/PersistCodec.o" "$build/CCRC32C.o" \
    -o "$build/fuzz-decoders"

echo "fuzz-codec: fuzzing for ${seconds}s" >&2
# Swift's own crash backtracer reads process memory in ways AddressSanitizer reports as a
# second error; libFuzzer already prints the stack.
export SWIFT_BACKTRACE="${SWIFT_BACKTRACE:-enable=no}"
status=0
# The first corpus directory receives new inputs; the seeds directory is only read.
# FUZZ_SEED fixes libFuzzer's mutation sequence (0 lets it pick one), so a run from the
# committed seeds is repeatable; CI uses the default.
"$build/fuzz-decoders" \
    -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "$seeds" || status=$?

if [[ $status -ne 0 ]]; then
    echo "fuzz-codec: FAILED (exit $status); reproducers in $artifacts/" >&2
    exit "$status"
fi
echo "fuzz-codec: no crashes in ${seconds}s" >&2
