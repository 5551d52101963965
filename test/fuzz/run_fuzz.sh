#!/usr/bin/env bash
# Builds codec_fuzz with clang + libFuzzer/ASan/UBSan and runs it over a copy of the corpus.
#
# Usage: test/fuzz/run_fuzz.sh <build-dir> <seconds>
# The fuzz build lives in <build-dir>/fuzz; the committed seed corpus is never written to.
# Exits non-zero when the build fails or the fuzzer finds a crash (artifacts in <build-dir>/fuzz).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <build-dir> <seconds>" >&2
  exit 2
fi
src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_dir="$(mkdir -p "$1" && cd "$1" && pwd)/fuzz"
seconds="$2"
jobs="${FUZZ_BUILD_JOBS:-2}"

CXX="${CXX:-clang++}"
case "$(basename "$CXX")" in
  clang++*) ;;
  *) CXX=clang++ ;;
esac

cmake -S "$src_dir" -B "$build_dir" -G Ninja \
  -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTERN_FUZZ=ON -DTERN_TESTS=ON >"$build_dir.configure.log" 2>&1 || {
  cat "$build_dir.configure.log" >&2
  exit 1
}
cmake --build "$build_dir" --target codec_fuzz -j "$jobs"

# Fuzz a scratch copy so new inputs never land in the committed corpus.
work="$build_dir/corpus-run"
rm -rf "$work"
mkdir -p "$work/codec" "$build_dir/artifacts"
cp "$src_dir/test/fuzz/corpus/codec/"* "$work/codec/"

"$build_dir/test/fuzz/codec_fuzz" \
  -max_total_time="$seconds" \
  -print_final_stats=1 \
  -artifact_prefix="$build_dir/artifacts/" \
  "$work/codec"
