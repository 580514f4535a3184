#!/usr/bin/env python3
"""The PyTorch eager peer of build/zimage_bench: diffusers' ZImageTransformer2DModel with a peft LoRA
of the same rank on the same layers (attention and feed-forward linears of the main layers), frozen
random weights N(0, 0.02²) of the same dtype, the same token counts, timed the same way (best of N
after one warm-up, the device synchronised before each clock read) with the peak device memory of
each pass. It prints zimage_bench's columns, so the two tables line up row for row; run both in one
session for honest ratios (scripts/device.sh does).

  DIFFUSERS_SRC=<diffusers tree> python3 bench/eager_zimage.py [--full] [--dim 1024] [--layers 8]
      [--refiners 2] [--image-tokens 1024] [--caption-tokens 128] [--rank 16] [--repeats 2]
      [--dtypes fp32,bf16] [--device cpu|cuda] [--checkpointing off,on] [--threads N]
      [--ours build/zimage_bench] [--ours-env NAME=VALUE ...] [--profile TRACE]

With --profile, one forward and one forward + backward per dtype after the timed ones run under
torch's profiler and are written as a Chrome trace (TRACE with the dtype before its extension), the
same passes zimage_bench --profile records: bench/profile_summary.py sums either per op.

With --ours, the two run interleaved in one session: for each dtype, `--repeats` rounds of one
zimage_bench process on the same config (its own warm-up, then two timed passes of each kind)
followed by two timed passes of each kind here (warmed up before the first round); each side keeps
its best, and the table gives deltatrain's speed-up (eager time / deltatrain time) per pass and dtype.

Attention is diffusers' default backend, torch's scaled_dot_product_attention (zimage_bench's
"fused" rows). peft comes from the environment when importable, else from PEFT_SRC (with
ACCELERATE_SRC and HF_HUB_SRC). On torch < 2 (Debian's 1.13) the shims of scripts/lora_clients.py
make diffusers importable, and two RoPE-table details of torch 2 are shimmed (shim_rope_table);
the module's forward code is untouched.
"""
import argparse
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def import_clients():
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
    import lora_clients
    if int(torch.__version__.split(".")[0]) < 2:
        work = os.path.join("/tmp", f"dt_eager_{os.getpid()}")
        lora_clients.setup_client_env("diffusers", work)
        shim_rope_table()
    else:
        sys.path.insert(0, lora_clients.source_tree("DIFFUSERS_SRC", "diffusers"))
        try:
            import peft  # noqa: F401  (on the GPU machine's image)
        except ImportError:
            for var, package in (("PEFT_SRC", "peft"), ("ACCELERATE_SRC", "accelerate"), ("HF_HUB_SRC", "huggingface_hub")):
                sys.path.insert(0, lora_clients.source_tree(var, package))
    from diffusers import ZImageTransformer2DModel
    from peft import LoraConfig, inject_adapter_in_model
    return ZImageTransformer2DModel, LoraConfig, inject_adapter_in_model


def shim_rope_table():
    """torch < 2: RopeEmbedder.precompute_freqs_cis enters `with torch.device("cpu")` (a 2.0 context
    manager), around tensors it makes on the CPU explicitly anyway: the same table without the context
    (once per model, outside every timed pass); and its lookup indexes with int32 positions, which
    1.13 refuses: the same positions as int64."""
    import torch
    from diffusers.models.transformers import transformer_z_image

    def precompute_freqs_cis(dim, end, theta=256.0):
        tables = []
        for d, e in zip(dim, end):
            freqs = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
            freqs = torch.outer(torch.arange(e, dtype=torch.float64), freqs).float()
            tables.append(torch.polar(torch.ones_like(freqs), freqs).to(torch.complex64))
        return tables
    rope = transformer_z_image.RopeEmbedder
    rope.precompute_freqs_cis = staticmethod(precompute_freqs_cis)
    lookup = rope.__call__
    rope.__call__ = lambda self, ids: lookup(self, ids.long())


def sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(repeats, f, device):
    f()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_rate(dtype, tokens, dim, hidden, repeats, device):
    import torch
    x = torch.randn(tokens, dim).to(device, dtype)
    w = torch.randn(hidden, dim).to(device, dtype)
    t = best_time(repeats + 2, lambda: torch.nn.functional.linear(x, w), device)
    return 2.0 * tokens * dim * hidden / t


def count_flops(dim, layers, refiners, cap_feat_dim, image, caption, rank, in_channels=16):
    """zimage_bench's count: 2·M·N·K per product; backward = input gradients + LoRA weight gradients."""
    d, f, a, r = dim, int(dim / 3 * 8), min(dim, 256), rank
    fwd = bwd = 0.0

    def linear(tokens, i, o, lora):
        nonlocal fwd, bwd
        fwd += 2 * tokens * i * o
        bwd += 2 * tokens * i * o
        if lora:
            adapter = 2 * tokens * r * (i + o)
            fwd += adapter
            bwd += 2 * adapter

    def block(tokens, modulated, lora):
        nonlocal fwd, bwd
        for _ in range(4):
            linear(tokens, d, d, lora)
        linear(tokens, d, f, lora), linear(tokens, d, f, lora), linear(tokens, f, d, lora)
        fwd += 4 * tokens * tokens * d
        bwd += 8 * tokens * tokens * d
        if modulated:
            fwd += 2 * a * 4 * d

    unified = image + caption
    linear(image, 4 * in_channels, d, False)
    linear(caption, cap_feat_dim, d, False)
    for _ in range(refiners):
        block(image, True, False), block(caption, False, False)
    for _ in range(layers):
        block(unified, True, True)
    linear(unified, d, 4 * in_channels, False)
    return fwd, bwd


def build(a, dtype, device, dims):
    """diffusers' model with frozen N(0, 0.02²) weights, a peft LoRA on attn-mlp, and the inputs."""
    import torch
    ZImageTransformer2DModel, LoraConfig, inject_adapter_in_model = a.clients
    dim, layers, side, cap_feat_dim = dims
    torch.manual_seed(0)
    kwargs = dict(dim=dim, n_layers=layers, n_refiner_layers=a.refiners, n_heads=dim // 128, n_kv_heads=dim // 128,
                  cap_feat_dim=cap_feat_dim, axes_lens=[1536, 512, 512])
    if int(torch.__version__.split(".")[0]) >= 2:
        with torch.device(device):  # made on the device: a full-size model never exists on the host
            model = ZImageTransformer2DModel(**kwargs).to(dtype)
    else:
        model = ZImageTransformer2DModel(**kwargs).to(device, dtype)
    with torch.no_grad():
        for prm in model.parameters():
            prm.normal_(0, 0.02)
            prm.requires_grad_(False)
    target = r"layers\.\d+\.(attention\.(to_q|to_k|to_v|to_out\.0)|feed_forward\.(w1|w2|w3))"
    model = inject_adapter_in_model(LoraConfig(r=a.rank, lora_alpha=1.0, target_modules=target), model)
    lora = []
    with torch.no_grad():
        for n, prm in model.named_parameters():
            if "lora_" in n:
                prm.copy_(torch.randn(prm.shape, dtype=prm.dtype) * 0.01)
                prm.requires_grad_(True)
                lora.append(prm)
    assert lora, "peft attached no adapters"
    x = [torch.randn(16, 1, side, side, device=device, dtype=dtype)]
    caps = [torch.randn(a.caption_tokens, cap_feat_dim, device=device, dtype=dtype)]
    t = torch.tensor([0.5], device=device)

    def forward():
        with torch.no_grad():
            model(x, t, caps, return_dict=False)

    def train():
        for prm in lora:
            prm.grad = None
        model(x, t, caps, return_dict=False)[0][0].float().pow(2).mean().backward()

    def set_checkpointing(on):
        model.train()
        if on:
            model.enable_gradient_checkpointing()
        else:
            model.disable_gradient_checkpointing()
    return set_checkpointing, {"forward": forward, "forward+backward": train}


TIMED_PER_ROUND = 2  # timed passes of each kind per round and side (zimage_bench: after its warm-up)


def ours_rows(a, name, checkpointing):
    """One zimage_bench process on the same config: {(checkpointing, pass): seconds}."""
    import subprocess
    args = [a.ours, "--dim", str(a.dim), "--layers", str(a.layers), "--refiners", str(a.refiners),
            "--image-tokens", str(a.image_tokens), "--caption-tokens", str(a.caption_tokens), "--rank", str(a.rank),
            "--repeats", str(TIMED_PER_ROUND), "--dtypes", name, "--device", a.device, "--checkpointing", checkpointing]
    if a.threads:
        args += ["--threads", str(a.threads)]
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in a.ours_env))
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout
    rows = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 9 and f[0] == name:
            rows[(f[2], f[3])] = (float(f[4]), float(f[7]))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true")
    p.add_argument("--dim", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--refiners", type=int, default=2)
    p.add_argument("--image-tokens", type=int)
    p.add_argument("--caption-tokens", type=int, default=128)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpointing", default="off")
    p.add_argument("--threads", type=int)
    p.add_argument("--ours", help="build/zimage_bench: time it on the same config, interleaved")
    p.add_argument("--profile", help="write a profiler trace of one pass of each kind per dtype here")
    p.add_argument("--ours-env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="environment of the zimage_bench processes only (e.g. OPENBLAS_NUM_THREADS=1 beside an eager "
                        "side that keeps OpenBLAS's own threads)")
    a = p.parse_args()
    a.dim = a.dim or (3840 if a.full else 1024)
    a.layers = a.layers or (30 if a.full else 8)
    a.image_tokens = a.image_tokens or (4096 if a.full else 1024)

    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    a.clients = import_clients()
    device = torch.device(a.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    side = round(math.sqrt(a.image_tokens)) * 2
    image = (side // 2) ** 2
    cap_feat_dim = 2560
    dims = (a.dim, a.layers, side, cap_feat_dim)
    fwd_flops, bwd_flops = count_flops(a.dim, a.layers, a.refiners, cap_feat_dim, image, a.caption_tokens, a.rank)
    flops = {"forward": fwd_flops, "forward+backward": fwd_flops + bwd_flops}
    print(f"diffusers ZImageTransformer2DModel (torch {torch.__version__}): dim {a.dim}, {a.layers} layers + {a.refiners} "
          f"refiner pairs, {image} image + {a.caption_tokens} caption tokens, peft LoRA rank {a.rank} on attn-mlp; "
          f"{device}, {torch.get_num_threads()} threads; best of {a.repeats}")
    print(f"counted: forward {fwd_flops / 1e9:.1f} GFLOP, backward {bwd_flops / 1e9:.1f} GFLOP\n")
    if a.ours:
        print("| dtype | checkpointing | pass | deltatrain s | eager s | deltatrain speed-up | deltatrain fraction of GEMM |")
        print("|---|---|---|---:|---:|---:|---:|", flush=True)
    else:
        print(f"{'dtype':<6} {'attention':<9} {'checkpointing':<14} {'pass':<18} {'time s':>10} {'GFLOP/s':>10} "
              f"{'GEMM GFLOP/s':>12} {'fraction':>10} {'peak GiB':>10}", flush=True)

    for name in a.dtypes.split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        set_checkpointing, passes = build(a, dtype, device, dims)
        if a.ours:
            ours, eager = {}, {}
            for checkpointing in a.checkpointing.split(","):
                set_checkpointing(checkpointing == "on")
                for f in passes.values():  # warm-up, as zimage_bench does for its side
                    f()
                    sync(device)
            for _ in range(a.repeats):
                for checkpointing in a.checkpointing.split(","):
                    for key, (s, fraction) in ours_rows(a, name, checkpointing).items():
                        if key not in ours or s < ours[key][0]:
                            ours[key] = (s, fraction)
                    set_checkpointing(checkpointing == "on")
                    for pass_name, f in passes.items():
                        for _ in range(TIMED_PER_ROUND):
                            t0 = time.perf_counter()
                            f()
                            sync(device)
                            s = time.perf_counter() - t0
                            eager[(checkpointing, pass_name)] = min(s, eager.get((checkpointing, pass_name), math.inf))
            for key in sorted(eager):
                o = ours.get(key, (math.nan, math.nan))
                print(f"| {name} | {key[0]} | {key[1]} | {o[0]:.3f} | {eager[key]:.3f} | {eager[key] / o[0]:.2f}× | {o[1]:.2f} |",
                      flush=True)
        else:
            gemm = gemm_rate(dtype, a.image_tokens + a.caption_tokens, a.dim, int(a.dim / 3 * 8), a.repeats, device)
            for checkpointing in a.checkpointing.split(","):
                set_checkpointing(checkpointing == "on")
                for pass_name, f in passes.items():
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    s = best_time(a.repeats, f, device)
                    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
                    rate = flops[pass_name] / s
                    print(f"{name:<6} {'fused':<9} {checkpointing:<14} {pass_name:<18} {s:>10.3f} {rate / 1e9:>10.1f} "
                          f"{gemm / 1e9:>12.1f} {rate / gemm:>10.2f} {peak:>10.2f}", flush=True)
        if a.profile:
            root, ext = os.path.splitext(a.profile)
            with torch.autograd.profiler.profile() as prof:
                for f in passes.values():
                    f()
            prof.export_chrome_trace(f"{root}.{name}{ext}")


if __name__ == "__main__":
    main()
