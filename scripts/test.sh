#!/usr/bin/env bash
# Builds Tern and runs every test: unit and integration tests through CTest, then the codec
# fuzzer for a bounded time. Usage: scripts/test.sh [build-dir] (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=$(nproc)
fuzz_seconds=${TERN_FUZZ_SECONDS:-60}

cmake -S . -B "$build" -G Ninja -DTERN_TESTS=ON
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 600

if [ "$fuzz_seconds" -gt 0 ] && [ -f test/fuzz/run_fuzz.sh ]; then
  bash test/fuzz/run_fuzz.sh "$build" "$fuzz_seconds"
fi
