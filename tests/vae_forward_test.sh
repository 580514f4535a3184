#!/usr/bin/env bash
# `deltatrain forward --component vae-encode|vae-decode` against both VAE goldens, checked by the
# goldens' own compare.py; then a broken checkpoint must fail with one line naming the key.
# Args: BINARY SHARED_DIR
set -euo pipefail
bin=$1 shared=$2
py=/usr/bin/python3  # Debian's, with numpy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for g in flux_vae flux2_vae; do
  dir=$shared/golden/$g
  "$bin" forward --component vae-encode --model "$dir/weights" --inputs "$dir/io.safetensors" --output "$tmp/$g.enc.safetensors"
  "$bin" forward --component vae-decode --model "$dir/weights" --inputs "$dir/io.safetensors" --output "$tmp/$g.dec.safetensors"
  $py "$shared/golden/compare.py" "$dir/io.safetensors" "$tmp/$g.enc.safetensors" --prefix out.enc
  $py "$shared/golden/compare.py" "$dir/io.safetensors" "$tmp/$g.dec.safetensors" --prefix out.dec
done
$py "$shared/golden/compare.py" "$shared/golden/flux2_vae/io.safetensors" "$tmp/flux2_vae.enc.safetensors" --prefix pipe.image

# A weights folder missing one tensor: exit 1, one line naming the tensor, no output written.
mkdir "$tmp/broken"
cp "$shared/golden/flux_vae/weights/config.json" "$tmp/broken/"
$py - "$shared/golden/flux_vae/weights/diffusion_pytorch_model.safetensors" "$tmp/broken/diffusion_pytorch_model.safetensors" <<'PY'
import json, struct, sys
src, dst = sys.argv[1:3]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
header.pop("encoder.conv_out.bias")
out, data = {}, b""
for name, info in header.items():
    if name == "__metadata__":
        continue
    begin, end = info["data_offsets"]
    out[name] = dict(info, data_offsets=[len(data), len(data) + end - begin])
    data += raw[8 + n + begin:8 + n + end]
text = json.dumps(out).encode()
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + data)
PY
if "$bin" forward --component vae-encode --model "$tmp/broken" --inputs "$shared/golden/flux_vae/io.safetensors" \
     --output "$tmp/out.safetensors" 2>"$tmp/err"; then
  echo "broken checkpoint was accepted"; exit 1
fi
cat "$tmp/err"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "expected one line"; exit 1; }
grep -q "missing tensor 'encoder.conv_out.bias'" "$tmp/err" || { echo "the missing tensor is not named"; exit 1; }
[ ! -e "$tmp/out.safetensors" ] || { echo "output written"; exit 1; }
echo PASS
