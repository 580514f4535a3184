#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite in three stages, each ending with
# CTest's summary:
#   1. the Release build (build/): every test, long ones included;
#   2. an AddressSanitizer + UBSan build of the readers of untrusted input (build-asan/:
#      safetensors, checkpoints, configs, JSON, images, tokenizer) running their tests;
#   3. the libFuzzer build (build-fuzz/, clang): each fuzz target for DT_FUZZ_SECONDS (60).
# Exits non-zero when any stage fails; the later stages still run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
# LibTorch's threads alone: OpenBLAS's own threads spin against them on few cores (2.5x slower on
# 2 cores, same bits; bench/EFFICACY.md).
export OPENBLAS_NUM_THREADS=1
failed=()

stage() { printf '\n=== %s\n' "$1"; }

stage "Release build: every test"
bash scripts/build.sh
(cd build && ctest --output-on-failure -j "$jobs" --timeout 1500) || failed+=(release)

stage "AddressSanitizer + UBSan build of the readers of untrusted input: their tests"
DT_BUILD_DIR=build-asan bash scripts/build.sh -DDT_ASAN=ON -DDT_PARSERS_ONLY=ON -DDT_BENCH=OFF
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
