#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite in two stages, each ending with
# CTest's summary:
#   1. an optimized AddressSanitizer + UBSan build (build-asan/): every test, long ones included.
#      LibTorch's kernels are not instrumented, so the sanitizers cost little on model tests, and
#      one build instead of two keeps CI inside its time on 2 cores;
#   2. the libFuzzer build (build-fuzz/, clang): each fuzz target for DT_FUZZ_SECONDS (60).
# Exits non-zero when any stage fails; the later stage still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
failed=()

stage() { printf '\n=== %s\n' "$1"; }

stage "AddressSanitizer + UBSan build (optimized): every test"
DT_BUILD_DIR=build-asan bash scripts/build.sh -DDT_ASAN=ON -DDT_BENCH=OFF
(cd build-asan && ctest --output-on-failure -j "$jobs" --timeout 1500) || failed+=(asan)

stage "libFuzzer: the safetensors reader for ${DT_FUZZ_SECONDS:-60} s"
CC=clang CXX=clang++ DT_BUILD_DIR=build-fuzz bash scripts/build.sh \
  -DDT_FUZZ=ON -DDT_TESTS=OFF -DDT_BENCH=OFF -DDT_FUZZ_SECONDS="${DT_FUZZ_SECONDS:-60}"
(cd build-fuzz && ctest --output-on-failure -L fuzz) || failed+=(fuzz)

if ((${#failed[@]})); then
  echo "FAILED stages: ${failed[*]}"
  exit 1
fi
echo "all stages passed"
