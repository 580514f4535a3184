#!/usr/bin/env bash
# LoRAs trained over 8-bit block weights against one trained over bf16 weights, on the shipped
# Z-Image world: the zorbit concept's Base LoRA (the efficacy table's recipe: rank 16, 300 steps of
# batch 4 at lr 1e-3) with model.dtype = bf16 and model.weight_dtype = "", int8, fp8; then each LoRA
# on the unquantized Base (fp32, 30 steps, CFG 4) scored by the world's scorer on the concept's
# prompts. Prints the loss curve (mean loss per 50 steps) and the scores.
#   bench/weights_8bit_world.sh [DELTATRAIN] [OUT]
set -euo pipefail
bin=$(realpath "${1:-build/deltatrain}")
out=$(realpath -m "${2:-/tmp/weights_8bit_world}")
root=$(cd "$(dirname "$0")/.." && pwd)
world=$root/worlds/shapes.toml
base=$root/worlds/shapes/zimage/base
export OPENBLAS_NUM_THREADS=1
mkdir -p "$out"
[ -d "$out/data" ] || "$bin" world render "$world" --concept zorbit --out "$out/data" > /dev/null
for w in bf16 int8 fp8; do
  weight_dtype=$([ "$w" = bf16 ] && echo "" || echo "$w")
  cat > "$out/$w.toml" <<TOML
[model]
family = 'zimage'
base = '$base'
dtype = 'bf16'
weight_dtype = '$weight_dtype'
[data]
cache_dir = 'cache'
resolutions = [ 64 ]
[[data.concepts]]
path = 'data'
caption_dropout = 0.1
[lora]
rank = 16
alpha = 16.0
[train]
seed = 1
epochs = 41
max_steps = 300
batch_size = 4
learning_rate = 0.001
save_every = 0
checkpoint_every = 0
[output]
run_dir = 'run-$w'
tensorboard = false
TOML
  [ -f "$out/run-$w/lora.safetensors" ] || "$bin" train "$out/$w.toml" > "$out/$w.log"
  "$bin" world eval "$world" --model "$base" --concept zorbit --steps 30 --cfg 4 --prompts 100 \
    --lora "$out/run-$w/lora.safetensors" --json "$out/eval-$w.json" > /dev/null
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
runs = ["bf16", "int8", "fp8"]
loss = {w: [json.loads(l)["loss"] for l in open(f"{out}/run-{w}/metrics.jsonl")] for w in runs}
print("steps      " + "".join(f"{w:>10}" for w in runs))
for s in range(0, 300, 50):
    print(f"{s + 1:>3}-{s + 50:<3}    " + "".join(f"{sum(loss[w][s:s + 50]) / 50:>10.4f}" for w in runs))
for w in runs:
    e = json.load(open(f"{out}/eval-{w}.json"))
    print(w, "LoRA on the unquantized Base (fp32):", json.dumps(e.get("accuracy", e)))
PY
