#!/usr/bin/env bash
# Data parallelism's cost on one machine: the same LoRA run (the shipped Z-Image world, the zorbit
# concept's recipe: rank 16, batch 4; bf16 and fp32; at the world's 64² — 16 image tokens — and
# upscaled to 256² — 256 tokens) as 1 process × 2 threads and as 2 ranks × 1 thread (deltatrain
# launch, Gloo over 127.0.0.1), alternated twice. Prints per arm the median step
# time after the first 5 steps, the ratio of the two ways, and the 2-rank runs' median wait for the
# gradient sum after the backward pass (metrics.jsonl's allreduce_s: the part of the sum that did not
# overlap the backward, the wait for the slower rank included) with the gradient bytes it sums.
#   bench/distributed_bench.sh [DELTATRAIN] [OUT] [STEPS]
set -euo pipefail
bin=$(realpath "${1:-build/deltatrain}")
out=$(realpath -m "${2:-/tmp/distributed_bench}")
steps=${3:-45}
root=$(cd "$(dirname "$0")/.." && pwd)
world=$root/worlds/shapes.toml
base=$root/worlds/shapes/zimage/base
export OPENBLAS_NUM_THREADS=1
mkdir -p "$out"
[ -d "$out/data" ] || "$bin" world render "$world" --concept zorbit --out "$out/data" > /dev/null
arms=(bf16-64 fp32-64 bf16-256 fp32-256)
for arm in "${arms[@]}"; do
  dtype=${arm%-*} side=${arm#*-}
  cat > "$out/$arm.toml" <<TOML
[model]
family = 'zimage'
base = '$base'
dtype = '$dtype'
[data]
cache_dir = 'cache-$arm'
resolutions = [ $side ]
[[data.concepts]]
path = 'data'
caption_dropout = 0.1
[lora]
rank = 16
alpha = 16.0
[train]
seed = 1
epochs = 41
max_steps = $steps
batch_size = 4
learning_rate = 0.001
save_every = 0
checkpoint_every = 0
[output]
tensorboard = false
TOML
  "$bin" cache "$out/$arm.toml" > /dev/null  # both ways read a filled cache
done
for repeat in 1 2; do
  for arm in "${arms[@]}"; do
    DT_THREADS=2 "$bin" train "$out/$arm.toml" --run-dir "$out/one-$arm-$repeat" > "$out/one-$arm-$repeat.log"
    "$bin" launch --nproc-per-node 2 -- train "$out/$arm.toml" --run-dir "$out/two-$arm-$repeat" > "$out/two-$arm-$repeat.log"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, os, statistics, struct, sys
out = sys.argv[1]
def rows(run):
    return [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")][5:]
def median(run, key):
    return statistics.median(r[key] for r in rows(run))
def grad_bytes(run):
    data = open(f"{out}/{run}/lora.safetensors", "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n]); header.pop("__metadata__", None)
    return sum(4 * eval("*".join(map(str, v["shape"])) or "1") for k, v in header.items() if k.endswith("weight"))
print(f"{'run':9} {'repeat':6} {'1 x 2 threads':>14} {'2 x 1 thread':>13} {'ratio':>6} {'sum wait':>9} {'share':>6} {'MB/step':>8}")
for arm in ["bf16-64", "fp32-64", "bf16-256", "fp32-256"]:
    for repeat in [1, 2]:
        one, two = f"one-{arm}-{repeat}", f"two-{arm}-{repeat}"
        t1, t2, reduce = median(one, "step_time_s"), median(two, "step_time_s"), median(two, "allreduce_s")
        mb = grad_bytes(two) / 1e6
        print(f"{arm:9} {repeat:<6} {t1 * 1000:>11.1f} ms {t2 * 1000:>10.1f} ms {t2 / t1:>6.2f} {reduce * 1000:>6.2f} ms "
              f"{reduce / t2:>6.1%} {mb:>8.2f}")
PY
