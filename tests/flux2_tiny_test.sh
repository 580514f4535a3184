#!/usr/bin/env bash
# The whole method on FLUX.2 [klein] from the command line: make-tiny's klein world (Base and
# distilled pipelines), a LoRA trained on the Base, delta transfer to the distilled sibling, and
# both LoRA files, written in ai-toolkit's layout, named by inspect as FLUX.2 files with BFL names.
# usage: flux2_tiny_test.sh DELTATRAIN SHARED_DIR
set -euo pipefail
bin=$(realpath "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$bin" make-tiny --family flux2-klein --out "$dir/world" --images 4 > "$dir/make.log"
grep -q "base/, distilled/" "$dir/make.log" || { cat "$dir/make.log"; exit 1; }
grep -q "flux2-klein transformer, diffusers names" <("$bin" inspect --summary "$dir/world/distilled/transformer")

short=(--set train.epochs=2 --set train.checkpoint_every=0 --set train.save_every=0 --set 'output.format="aitoolkit"')
"$bin" train "$dir/world/train.toml" "${short[@]}" > "$dir/train.log"
"$bin" transfer "$dir/world/transfer.toml" "${short[@]}" > "$dir/transfer.log"
grep -q "student flux2-klein" "$dir/transfer.log" || { cat "$dir/transfer.log"; exit 1; }

for lora in run/lora.safetensors transfer-run/lora.safetensors; do
  "$bin" inspect "$dir/world/$lora" > "$dir/inspect.txt"
  grep -q "fits flux2-klein" "$dir/inspect.txt" || { echo "$lora:"; cat "$dir/inspect.txt"; exit 1; }
  grep -q "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight" "$dir/inspect.txt" || { echo "$lora has no fused BFL qkv"; exit 1; }
done
echo ok
