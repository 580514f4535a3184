#!/usr/bin/env bash
# The command line: --help for every command, one-line errors and non-zero exits for user
# mistakes, and inspect on a real golden checkpoint. Arguments: deltatrain binary, shared folder.
set -uo pipefail
bin=$1 shared=$2
source "$(dirname "$0")/cli_lib.sh"

run 0 --version
grep -qE '^deltatrain [0-9]+\.[0-9]+\.[0-9]+$' "$out" || fail "--version printed: $(cat "$out")"
run 0 --help
commands=$(awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }' "$out")
[ -n "$commands" ] || fail "--help lists no command"
for c in $commands; do
  run 0 "$c" --help
  [ -s "$out" ] || fail "$c --help printed nothing"
  [ ! -s "$err" ] || fail "$c --help wrote to stderr: $(head -c 300 "$err")"
  run 2 "$c" --no-such-flag
  one_line_error "$c --no-such-flag" "deltatrain $c: error: "
done
run 2
run 2 no-such-command
one_line_error "unknown command" "unknown command 'no-such-command'"
run 2 inspect
one_line_error "inspect without PATH" "PATH is required"
run 1 inspect "$tmp/missing.safetensors"
one_line_error "inspect of a missing file" "$tmp/missing.safetensors: no such file or folder"
run 1 inspect "$tmp"
one_line_error "inspect of an empty folder" "holds no .safetensors file"

# inspect lists every tensor (name, dtype, shape) and the parameter count the header implies.
weights=$shared/golden/zimage_transformer/weights
if [ -d "$weights" ]; then
  run 0 inspect "$weights"
  expected=$(python3 - "$weights/diffusion_pytorch_model.safetensors" <<'PY'
import json, math, struct, sys
with open(sys.argv[1], "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
header.pop("__metadata__", None)
print(len(header), sum(math.prod(e["shape"]) for e in header.values()))
PY
)
  read -r tensors params <<<"$expected"
  grep -qx "tensors: $tensors" "$out" || fail "inspect: expected 'tensors: $tensors'"
  grep -qx "parameters: $params" "$out" || fail "inspect: expected 'parameters: $params'"
  listed=$(grep -cE '^[^ ]+ +(F32|BF16|F16) +\[[0-9, ]*\]$' "$out")
  [ "$listed" = "$tensors" ] || fail "inspect listed $listed tensor lines, expected $tensors"
else
  fail "no golden at $weights"
fi
report
