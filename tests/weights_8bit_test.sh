#!/usr/bin/env bash
# model.weight_dtype on make-tiny's world: LoRAs trained over int8 and fp8 block weights have the
# same keys as one trained in full precision, start from the same loss, and load on the unquantized
# model; `sample --weight-dtype` merges a LoRA before storing the weights in 8 bits; bad settings
# are one line each.
# usage: weights_8bit_test.sh DELTATRAIN SHARED_DIR
set -uo pipefail
bin=$(realpath "$1")
source "$(dirname "$0")/cli_lib.sh"
export DT_THREADS=1

"$bin" make-tiny --out "$tmp/world" --images 4 > /dev/null || { echo "make-tiny failed"; exit 1; }
cfg="$tmp/world/train.toml"
for w in dense int8 fp8; do
  set_w=()
  [ "$w" = dense ] || set_w=(--set "model.weight_dtype=$w")
  run 0 train "$cfg" --run-dir "$tmp/$w" --set train.epochs=2 "${set_w[@]}"
done

# The same tensor names, shapes and dtypes; losses of the first step within 1% (the same batch and
# noise through weights that differ by the quantization error), and the runs really differ.
/usr/bin/python3 - "$tmp" <<'PY' || fail "LoRAs or losses of the 8-bit runs do not match the dense run's"
import json, struct, sys
root = sys.argv[1]
def header(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    h = json.loads(data[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"]) for k, v in h.items()}
def losses(run):
    return [json.loads(line)["loss"] for line in open(f"{root}/{run}/metrics.jsonl")]
dense = header(f"{root}/dense/lora.safetensors")
for w in ("int8", "fp8"):
    if header(f"{root}/{w}/lora.safetensors") != dense:
        sys.exit(f"{w}: LoRA tensors differ from the dense run's")
    a, b = losses("dense"), losses(w)
    if len(a) != len(b) or abs(a[0] - b[0]) > 0.01 * abs(a[0]):
        sys.exit(f"{w}: losses {b[:3]} against {a[:3]}")
    if a == b:
        sys.exit(f"{w}: the losses are the dense run's to the bit: the weights were not stored in 8 bits")
    print(w, "first losses", [round(x, 5) for x in b[:3]], "dense", [round(x, 5) for x in a[:3]])
PY

# The LoRA trained over int8 weights samples on the unquantized Turbo, and merged into 8-bit weights.
s=(sample --model "$tmp/world/turbo" --prompt "a red circle" --width 64 --height 64 --steps 2)
run 0 "${s[@]}" --lora "$tmp/int8/lora.safetensors" --out "$tmp/s-dense"
run 0 "${s[@]}" --lora "$tmp/int8/lora.safetensors" --weight-dtype int8 --out "$tmp/s-int8"
[ -s "$tmp/s-int8/000-42.png" ] || fail "no image from an 8-bit sample"

run 1 train "$cfg" --run-dir "$tmp/bad" --set model.weight_dtype=int4
one_line_error "unknown weight dtype" "model.weight_dtype 'int4' is not one of"
run 1 train "$cfg" --run-dir "$tmp/full" --set model.weight_dtype=int8 --set train.method=full
one_line_error "8-bit full training" "model.weight_dtype = \"int8\" stores frozen weights in 8 bits"
report
