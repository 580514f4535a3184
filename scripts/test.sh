#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (CTest prints its summary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
cd build && ctest --output-on-failure -j "$(nproc)" --timeout 1500
