#!/usr/bin/env bash
# `deltatrain sample` on make-tiny's Turbo: files, the parameters chunk, the grid, the same bytes
# for the same seed, and user mistakes as one line with nothing written.
# usage: sample_cli_test.sh DELTATRAIN SHARED_DIR
set -uo pipefail
bin=$(realpath "$1")
source "$(dirname "$0")/cli_lib.sh"

"$bin" make-tiny --out "$tmp/world" --images 2 --resolution 32 > /dev/null || { echo "make-tiny failed"; exit 1; }
args=(--model "$tmp/world/turbo" --prompt "a red circle" --prompt "a blue square" --width 32 --height 32)

run 0 sample "${args[@]}" --out "$tmp/a"
grep -q "distilled" "$out" || fail "the Turbo folder was not taken for a distilled model: $(cat "$out")"
for f in 000-42.png 001-43.png grid.png; do [ -s "$tmp/a/$f" ] || fail "missing $f"; done

# The parameters chunk (iTXt, UTF-8, uncompressed; read here by a plain PNG chunk walker).
/usr/bin/python3 - "$tmp/a/001-43.png" > "$tmp/params" <<'PY' || fail "no parameters chunk"
import struct, sys
data = open(sys.argv[1], "rb").read()
pos, found = 8, False
while pos < len(data):
    (n,) = struct.unpack(">I", data[pos:pos + 4])
    kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
    if kind == b"iTXt" and body.startswith(b"parameters\0\0\0"):  # keyword, not compressed, method 0
        language_end = body.index(b"\0", 13)
        print(body[body.index(b"\0", language_end + 1) + 1:].decode("utf-8")); found = True
    pos += 12 + n
sys.exit(0 if found else 1)
PY
grep -q "^a blue square$" "$tmp/params" || fail "prompt not in the parameters: $(cat "$tmp/params")"
grep -q "Steps: 8, Sampler: Euler (flow matching), CFG scale: 1, Seed: 43, Size: 32x32" "$tmp/params" ||
  fail "Turbo defaults not in the parameters: $(cat "$tmp/params")"

# The same command gives the same bytes.
run 0 sample "${args[@]}" --out "$tmp/b"
cmp -s "$tmp/a/000-42.png" "$tmp/b/000-42.png" || fail "same seed, different image"
cmp -s "$tmp/a/000-42.png" "$tmp/a/001-43.png" && fail "different prompts and seeds, same image"

# Base with CFG and explicit settings; a LoRA at strength 0 changes nothing.
run 0 sample --model "$tmp/world/base" --prompt "a red circle" --width 32 --height 32 --steps 3 --guidance 2 --out "$tmp/c"
grep -q "Base" "$out" || fail "the base folder was not taken for a Base model: $(cat "$out")"
"$bin" train "$tmp/world/train.toml" --set train.epochs=1 --run-dir "$tmp/run" > /dev/null || fail "train failed"
run 0 sample --model "$tmp/world/base" --prompt "a red circle" --width 32 --height 32 --steps 3 --guidance 2 \
  --lora "$tmp/run/lora.safetensors:0" --out "$tmp/d"
/usr/bin/python3 - "$tmp/c/000-42.png" "$tmp/d/000-42.png" <<'PY' || fail "LoRA at strength 0 changed the pixels"
import struct, sys, zlib
def pixels(path):
    data, pos, out = open(path, "rb").read(), 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        if data[pos + 4:pos + 8] == b"IDAT": out += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    return zlib.decompress(out)
sys.exit(0 if pixels(sys.argv[1]) == pixels(sys.argv[2]) else 1)
PY

# User mistakes: one line, exit 1, nothing written.
run 1 sample "${args[@]}" --lora "$tmp/missing.safetensors" --out "$tmp/e"
one_line_error "missing LoRA" "missing.safetensors"
printf 'not a safetensors file' > "$tmp/bad.safetensors"
run 1 sample "${args[@]}" --lora "$tmp/bad.safetensors" --out "$tmp/e"
one_line_error "bad LoRA" "bad.safetensors"
run 1 sample --model "$tmp/world/turbo" --prompt x --width 40 --height 32 --out "$tmp/e"
one_line_error "bad size" "multiple of 16"
run 1 sample --model "$tmp/world/turbo" --out "$tmp/e"
one_line_error "no prompts" "no prompts"
run 1 sample --model "$tmp/world/turbo" --prompts "$tmp/missing.json" --out "$tmp/e"
one_line_error "missing prompts file" "missing.json"
[ -z "$(ls -A "$tmp/e" 2>/dev/null)" ] || fail "a failed command wrote files: $(ls "$tmp/e")"

report
