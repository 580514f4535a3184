#!/usr/bin/env bash
# `deltatrain cache`: bad files are listed all at once and stop the run before any model loads;
# with data.bad_files = "skip" they are reported and left out. With make-tiny's world, a second
# run reuses every entry.
# usage: data_cache_test.sh DELTATRAIN SHARED_DIR
set -euo pipefail
bin=$(realpath "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

mkdir -p "$dir/images"
# A 32x32 gray PNG written by hand (zlib + CRCs), a truncated copy, and one without its caption.
/usr/bin/python3 - "$dir/images" <<'PY'
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
raw = b"".join(b"\0" + bytes([(x * 8) % 256 for x in range(32)]) for _ in range(32))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
folder = sys.argv[1]
open(f"{folder}/good.png", "wb").write(png)
open(f"{folder}/cut.png", "wb").write(png[:-30])
open(f"{folder}/uncaptioned.png", "wb").write(png)
for name in ("good", "cut"):
    open(f"{folder}/{name}.txt", "w").write("a gray gradient\n")
PY
cat > "$dir/run.toml" <<'TOML'
[model]
family = "zimage"
base = "no_such_model"
[data]
cache_dir = "cache"
resolutions = [32]
[[data.concepts]]
path = "images"
TOML

if "$bin" cache "$dir/run.toml" > "$dir/out" 2> "$dir/err"; then echo "bad files accepted"; exit 1; fi
grep -q "2 bad files in the dataset" "$dir/err" || { echo "no bad-file count:"; cat "$dir/err"; exit 1; }
grep -q "$dir/images/cut.png: corrupt PNG: file is truncated" "$dir/err" || { cat "$dir/err"; exit 1; }
grep -q "$dir/images/uncaptioned.png: missing caption file uncaptioned.txt" "$dir/err" || { cat "$dir/err"; exit 1; }
[ ! -e "$dir/cache/latents" ] || { echo "cache written despite bad files"; exit 1; }

# Skipped: listed, and the scan goes on (to the model load, which fails on the missing model).
"$bin" cache "$dir/run.toml" --set data.bad_files=skip > "$dir/out" 2> "$dir/err" || true
grep -q "skipped: $dir/images/cut.png" "$dir/err" || { cat "$dir/err"; exit 1; }
grep -q "dataset: 1 samples in 1 concept" "$dir/out" || { cat "$dir/out" "$dir/err"; exit 1; }
grep -q "no_such_model" "$dir/err" || { cat "$dir/err"; exit 1; }

if "$bin" make-tiny --help > /dev/null 2>&1; then
  "$bin" make-tiny --out "$dir/world" --images 4 > /dev/null
  "$bin" cache "$dir/world/train.toml" > "$dir/first"
  grep -q "latents: 4 computed, 0 reused" "$dir/first" || { cat "$dir/first"; exit 1; }
  "$bin" cache "$dir/world/train.toml" > "$dir/second"
  grep -q "latents: 0 computed, 4 reused" "$dir/second" || { cat "$dir/second"; exit 1; }
  grep -q "text: 0 computed" "$dir/second" || { cat "$dir/second"; exit 1; }
fi
echo "ok"
