#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
./build/deltatrain demo --workdir "${DT_DEMO_DIR:-demo-run}" "$@"
