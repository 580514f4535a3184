#!/usr/bin/env bash
# A real `deltatrain train` killed with SIGKILL at several points and resumed ends with a LoRA whose
# tensors are bitwise identical to an uninterrupted run's (CPU, fp32). Also: make-tiny's world
# trains end to end, and the metrics file reads as one run after a resume.
# usage: train_resume_test.sh DELTATRAIN SHARED_DIR
set -euo pipefail
bin=$(realpath "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export DT_THREADS=1  # the same thread count in every run

"$bin" make-tiny --out "$dir/world" --images 6 > /dev/null
settings=(--set train.epochs=60 --set train.checkpoint_every=1 --set train.save_every=0 --set lora.dropout=0.1)
"$bin" train "$dir/world/train.toml" --run-dir "$dir/reference" "${settings[@]}" > "$dir/reference.log"
steps=$(wc -l < "$dir/reference/metrics.jsonl")
[ "$steps" -eq 180 ] || { echo "expected 180 steps, metrics has $steps"; exit 1; }

# Tensors of two safetensors files, compared byte for byte (the metadata may differ: dates).
same_tensors() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if a.keys() != b.keys():
    sys.exit("different tensor names")
bad = [k for k in a if a[k] != b[k]]
if bad:
    sys.exit(f"{len(bad)} tensors differ, e.g. {bad[0]}")
PY
}

# Kill after the k-th logged step (a moment somewhere in the following step or checkpoint write).
# A tiny step takes milliseconds: the last kill point leaves 60 steps (~0.7 s here) so that a fast or
# loaded machine still kills the run before it ends.
for k in 1 60 120; do
  run="$dir/killed_$k"
  "$bin" train "$dir/world/train.toml" --run-dir "$run" "${settings[@]}" > "$run.log" 2>&1 &
  pid=$!
  until [ -f "$run/metrics.jsonl" ] && [ "$(wc -l < "$run/metrics.jsonl")" -ge "$k" ]; do
    kill -0 "$pid" 2> /dev/null || { echo "run ended before step $k"; cat "$run.log"; exit 1; }
    sleep 0.01
  done
  kill -9 "$pid"
  wait "$pid" 2> /dev/null || true
  [ ! -f "$run/lora.safetensors" ] || { echo "killed run $k already finished; kill point not reached"; exit 1; }
  "$bin" train "$dir/world/train.toml" --run-dir "$run" "${settings[@]}" --resume > "$run.resume.log"
  same_tensors "$dir/reference/lora.safetensors" "$run/lora.safetensors" || { echo "kill after step $k: resumed LoRA differs"; exit 1; }
  lines=$(wc -l < "$run/metrics.jsonl")
  [ "$lines" -eq "$steps" ] || { echo "kill after step $k: metrics has $lines lines, expected $steps"; exit 1; }
  echo "killed after step $k: resumed LoRA identical"
done
