#!/usr/bin/env python3
"""The memory table of docs/memory.md from `memory_bench step` lines (one per line of the log).

For each model and weight format: the measured resident weights, the peak right after loading, and
the peak of a LoRA training step at 256² and 512² (gradient checkpointing on). The step's own
memory is the step peak minus the resident set after loading, less the LoRA's training state
(fp32 weights, gradients and two AdamW moments: 16 bytes per LoRA parameter); for each model it is
fitted on its bf16 runs as a·L + b·L² over the L = image + text tokens of the two sizes (the L²
term is the explicit attention of LibTorch 1.x on the CPU) and extrapolated to 1024², for every
weight format of that model (the activations do not depend on how the weights are stored; an 8-bit
model adds one block's decoded weights while that block is recomputed, which the CPU rows include
at 256²). On a GPU with fused attention (LibTorch 2.x) the L² term goes away; the card estimate is
weights + LoRA state + a·L + 1 GiB (CUDA context and allocator slack), against 8, 12, 16, 24, 48
and 80 GB cards (95% of each usable).

  python3 bench/memory_table.py LOG
"""
import re
import sys

CARDS = [8, 12, 16, 24, 48, 80]
GB = 1e9 / 2**30  # a card's "GB" in GiB


def tokens(family, side, text):
    image = (side // 16) ** 2  # both families: 16 pixels per token side (VAE 8 × patch 2)
    return image + text


def main():
    runs = {}
    for line in open(sys.argv[1]):
        m = re.match(r"(\S+) weights=(\S+) side=(\d+) text=(\d+) .*checkpointing=on .*\| (.*)", line)
        if not m:
            continue
        family, weights, side, text = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        v = {k: float(x) for k, x in (kv.split("=") for kv in m.group(5).split())}
        model = f"{family} {v['bf16_weights']:.1f} GiB bf16"
        runs.setdefault((model, weights), {})[side] = (v, tokens(family, side, text))
    fits = {}
    for (model, weights), sides in runs.items():
        if weights == "dense" and 256 in sides and 512 in sides:
            (v1, l1), (v2, l2) = sides[256], sides[512]
            state = v1["lora_M"] * 1e6 * 16 / 2**30
            y1 = v1["step_peak"] - v1["rss_loaded"] - state
            y2 = v2["step_peak"] - v2["rss_loaded"] - state
            det = l1 * l2 * l2 - l2 * l1 * l1  # y = a·L + b·L²
            fits[model] = ((y1 * l2 * l2 - y2 * l1 * l1) / det, (l1 * y2 - l2 * y1) / det, l2, l2 - 32 * 32 + 64 * 64)
    print("| model | weights | resident weights GiB | peak after load GiB | step peak 256² GiB | step peak 512² GiB "
          "| step memory 1024², CPU (fit) GiB | GPU estimate 512² / 1024² GiB | fits at 1024² |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for (model, weights), sides in sorted(runs.items()):
        first = sides[min(sides)][0]
        state = first["lora_M"] * 1e6 * 16 / 2**30
        row = [model, weights, f"{first['weights']:.2f}", f"{first['load_peak']:.2f}"]
        for side in (256, 512):
            row.append(f"{sides[side][0]['step_peak']:.2f}" if side in sides else "–")
        if model in fits:
            a, b, l512, l1024 = fits[model]
            row.append(f"{a * l1024 + b * l1024 * l1024:.1f}")
            gpu = [first["weights"] + state + max(a, 0) * l + 1 for l in (l512, l1024)]
            row.append(f"{gpu[0]:.1f} / {gpu[1]:.1f}")
            row.append(", ".join(f"{c} GB" for c in CARDS if gpu[1] <= c * GB * 0.95) or "none")
        else:
            row += ["–", "–", "–"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
