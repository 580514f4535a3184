#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
# OpenBLAS's own threads and LibTorch's OpenMP threads share the cores and spin while waiting for
# each other: on the world's small models one BLAS thread makes the demo 2.7× faster on 2 cores
# (bench/EFFICACY.md), with the same bits.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
./build/deltatrain demo --workdir "${DT_DEMO_DIR:-demo-run}" "$@"
