#!/usr/bin/python3
"""Load deltatrain's LoRA files with the clients' own loading code and compare every patched weight.

Rows: deltatrain's output formats. Columns: family (zimage, flux2-klein) x client (ComfyUI, diffusers).
A cell is "exact" when every weight the client patches equals up @ down * alpha / rank (read from the
`onetrainer` file of the same run: diffusers module names, lora_down / lora_up + `.alpha` tensor) within
a relative error of 1e-5 (|got - ref| / |ref| per module), and nothing else changed; otherwise a short
diagnosis. Training is deterministic, so the seven files of one run encode the same delta.

    COMFYUI_SRC=... DIFFUSERS_SRC=... PEFT_SRC=... ACCELERATE_SRC=... HF_HUB_SRC=... EINOPS_SRC=... \
    /usr/bin/python3 scripts/lora_clients.py --deltatrain build/deltatrain --work /tmp/lora-clients-run

The interpreter is Debian's (python3-torch 1.13, python3-numpy, python3-yaml, python3-psutil,
python3-packaging, python3-tqdm, python3-filelock, python3-regex, python3-requests, python3-httpx,
python3-fsspec, python3-pil, python3-scipy). The clients run from source trees (never edited; only their
missing binary / heavy dependencies and torch >= 2 attributes are shimmed below):

  COMFYUI_SRC     ComfyUI, upstream commit fe2511468d6b (2026-02-03): the mirror
                  github.com/hiddenswitch/pip-and-uv-installable-ComfyUI carries it;
                  git archive fe2511468d6b | tar -x -C DIR (a partial clone that lacks the blob of
                  comfy/text_encoders/llama_tokenizer/tokenizer.json, unused here, makes git archive
                  stop: write each `git ls-tree -r` blob with `git cat-file blob` instead)
  DIFFUSERS_SRC   github.com/huggingface/diffusers tag v0.40.0
  PEFT_SRC        github.com/huggingface/peft tag v0.20.0
  ACCELERATE_SRC  github.com/huggingface/accelerate tag v1.14.0   (peft imports it)
  HF_HUB_SRC      github.com/huggingface/huggingface_hub tag v1.28.0   (diffusers needs >= 1.23)
  EINOPS_SRC      github.com/arogozhnikov/einops tag v0.8.2   (ComfyUI imports it)

Shimmed, not run: safetensors (a Rust extension; a pure-Python reader/writer of the same format is
below), transformers and tokenizers (only imported for type names and text encoders, never called on
this path; transformers claims version 4.57.1 so diffusers enables its PEFT backend), comfy_aimdo
(ComfyUI's CUDA VRAM manager) and torchvision (imported by models not on this path). torch 1.13 gets
what the clients touch of torch >= 2: float8 / uint16 dtype names, torch.compiler, Tensor.nbytes,
load_state_dict(assign=), nn.RMSNorm, F.scaled_dot_product_attention, torch.xpu / torch.mps, three
distributed / flex-attention module names; ComfyUI's one read of torch.dtype.itemsize (a VRAM
estimate) is given the same formula. ComfyUI sizes some Z-Image / FLUX.2 fields from the real models'
widths (head counts, RoPE axes, refiner count, t_embedder widths): for the tiny models these come
from their config.json, and mismatched parameter shapes are set to the checkpoint's before loading.
No key mapping, alpha handling or patch maths of a client is replaced.

Each client runs in its own process (`--client`), loads the tiny Base transformer, applies each file
at strength 1 and reports per diffusers module: exact, not applied, scaled by c, shift/scale halves
swapped, wrong, or changed without a reference; plus the client's own warnings.

Fixtures for src/lora/clients_test.cc (no deltatrain binary needed; the golden models of ../shared):

    /usr/bin/python3 scripts/lora_clients.py --fixtures tests/fixtures/lora_clients
    /usr/bin/python3 scripts/lora_clients.py --check-fixtures tests/fixtures/lora_clients   # schema + summary

probe the same loading code with one file per naming form (prefix diffusion_model. / transformer. /
lora_unet_ (flattened) / none; diffusers or native module names; lora_A/B or lora_down/up; `.alpha`
tensors or not; a PEFT config in the metadata or not) and write, per client and family, what the client
does with each form: the file modules it takes, the weight rows each lands on (halves swapped or not),
the scale, or its error. See "fixtures" below for the file format.
"""
import argparse
import contextlib
import copy
import importlib
import importlib.abc
import importlib.machinery
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import types
import warnings
import zlib

FORMATS = ["comfyui", "comfyui-native", "peft", "kohya", "onetrainer", "original", "aitoolkit"]
FAMILIES = {"zimage": "Z-Image", "flux2-klein": "FLUX.2 klein"}
# Preset groups: the family's usual preset, then everything.
GROUPS = {"default": {"zimage": "attn-mlp", "flux2-klein": "blocks"}, "full": {"zimage": "full", "flux2-klein": "full"}}
CLIENTS = {"comfyui": "ComfyUI", "diffusers": "diffusers"}
SOURCES = [  # env var, package dir in the tree (or its src/), version for the fake dist-info, where from
    ("COMFYUI_SRC", "comfy", None, "ComfyUI commit fe2511468d6b (mirror: hiddenswitch/pip-and-uv-installable-ComfyUI)"),
    ("DIFFUSERS_SRC", "diffusers", "0.40.0", "huggingface/diffusers tag v0.40.0"),
    ("PEFT_SRC", "peft", "0.20.0", "huggingface/peft tag v0.20.0"),
    ("ACCELERATE_SRC", "accelerate", "1.14.0", "huggingface/accelerate tag v1.14.0"),
    ("HF_HUB_SRC", "huggingface_hub", "1.28.0", "huggingface/huggingface_hub tag v1.28.0"),
    ("EINOPS_SRC", "einops", "0.8.2", "arogozhnikov/einops tag v0.8.2"),
]
# Train settings: alpha != rank so a missed or doubled alpha shows; a large step so `up` is far from 0.
TRAIN = {"lora.rank": "4", "lora.alpha": "2", "train.seed": "7", "train.max_steps": "3", "train.learning_rate": "0.02",
         "train.warmup_steps": "0"}
TOL = 1e-5
# ComfyUI imports these at module level for nodes / models not on the LoRA path.
COMFY_STUBS = ["comfy_aimdo", "torchvision"]


# ============================================================================ shims (client processes)
def _st_dtypes():
    import torch
    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
            "BOOL": torch.bool}


class SafeOpen:
    """safetensors.safe_open: 8-byte little-endian header length, JSON header, raw little-endian data."""

    def __init__(self, path, framework="pt", device="cpu"):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            self._header = json.loads(f.read(n))
            self._data = f.read()
        self._meta = self._header.pop("__metadata__", None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return list(self._header)

    def metadata(self):
        return self._meta

    def get_tensor(self, key):
        import torch
        h = self._header[key]
        a, b = h["data_offsets"]
        dtype = _st_dtypes()[h["dtype"]]
        if a == b:
            return torch.zeros(h["shape"], dtype=dtype)
        return torch.frombuffer(bytearray(self._data[a:b]), dtype=dtype).reshape(h["shape"]).clone()


def st_load_file(path, device="cpu"):
    with SafeOpen(path) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def st_save_file(tensors, path, metadata=None):
    names = {v: k for k, v in _st_dtypes().items()}
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        raw = t.detach().contiguous().cpu().reshape(-1).view(__import__("torch").uint8).numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def install_safetensors_shim():
    st, stt = types.ModuleType("safetensors"), types.ModuleType("safetensors.torch")
    st.__path__, st.__version__ = [], "0.8.0"
    # A __spec__ so importlib.util.find_spec (diffusers' availability check) sees a package.
    st.__spec__ = importlib.machinery.ModuleSpec("safetensors", None, is_package=True)
    stt.__spec__ = importlib.machinery.ModuleSpec("safetensors.torch", None)
    st.safe_open = stt.safe_open = SafeOpen
    st.SafetensorError = type("SafetensorError", (Exception,), {})
    stt.load_file, stt.save_file = st_load_file, st_save_file
    stt.load_model = lambda model, filename, strict=True, device="cpu": model.load_state_dict(st_load_file(filename), strict=strict)
    stt.save_model = lambda model, filename, metadata=None: st_save_file(model.state_dict(), filename, metadata)
    stt.storage_ptr = lambda t: t.storage().data_ptr()  # peft imports these two
    stt.storage_size = lambda t: t.storage().nbytes()
    st.torch = stt
    sys.modules["safetensors"], sys.modules["safetensors.torch"] = st, stt


class _DummyMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _dummy(name)


def _dummy(name):
    """A class that accepts import-time use: subclassing (it adds no behaviour to subclasses, e.g. peft's
    configs derive from transformers' PushToHubMixin), attribute chains on the class, subscripting."""
    class D(metaclass=_DummyMeta):
        def __init__(self, *a, **k):
            pass

        def __class_getitem__(cls, item):
            return cls
    D.__name__ = D.__qualname__ = name
    return D


class StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _dummy(name)
        setattr(self, name, value)
        return value


class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of these top-level packages (and their submodules) get stub modules."""

    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def stub_torch_module(fullname):
    """A torch submodule that 1.13 lacks (only referenced in annotations / unused code paths)."""
    if fullname in sys.modules:
        return sys.modules[fullname]
    m = StubModule(fullname)
    m.__path__ = []
    m.__spec__ = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
    sys.modules[fullname] = m
    parent, _, child = fullname.rpartition(".")
    try:
        p = importlib.import_module(parent)
    except ImportError:
        p = stub_torch_module(parent)
    setattr(p, child, m)
    return m


class _AbsentBackend(types.ModuleType):
    def is_available(self):
        return False

    def device_count(self):
        return 0

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *a, **k: None


def install_torch_shims():
    import torch
    # dtypes of torch >= 2.1, referenced in dtype tables; no tensor of them is ever made here.
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
                 "float4_e2m1fn_x2", "uint16", "uint32", "uint64"):
        if not hasattr(torch, name):
            setattr(torch, name, type("missing_dtype_" + name, (), {"itemsize": 1, "is_floating_point": True})())
    if not hasattr(torch, "compiler"):  # torch.compiler (2.1): decorators become the identity
        c = types.ModuleType("torch.compiler")
        c.disable = lambda fn=None, *a, **k: fn if fn is not None else (lambda f: f)
        c.is_compiling = c.is_dynamo_compiling = lambda: False
        c.allow_in_graph = c.assume_constant_result = lambda fn: fn
        torch.compiler = sys.modules["torch.compiler"] = c
    if not hasattr(torch.Tensor, "nbytes"):  # 2.0
        torch.Tensor.nbytes = property(lambda t: t.numel() * t.element_size())
    lsd = torch.nn.Module.load_state_dict
    if "assign" not in lsd.__code__.co_varnames:
        # `assign=True` (2.1) puts the given tensors in place of the module's (peft materialises LoRA
        # layers made on the meta device this way); without it 1.13's copy is the same.
        def load_state_dict(self, sd, strict=True, assign=False):
            if not assign:
                return lsd(self, sd, strict=strict)
            own = self.state_dict(keep_vars=True)
            missing = [k for k in own if k not in sd]
            unexpected = [k for k in sd if k not in own]
            if strict and (missing or unexpected):
                raise RuntimeError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
            for k, v in sd.items():
                if k not in own:
                    continue
                mod_name, _, attr = k.rpartition(".")
                mod = self.get_submodule(mod_name) if mod_name else self
                if attr in mod._parameters:
                    old = mod._parameters[attr]
                    mod._parameters[attr] = torch.nn.Parameter(v, requires_grad=old.requires_grad if old is not None else False)
                else:
                    mod._buffers[attr] = v
            return torch.nn.modules.module._IncompatibleKeys(missing, unexpected)
        torch.nn.Module.load_state_dict = load_state_dict
    if not hasattr(torch.nn, "RMSNorm"):  # 2.4; diffusers' FLUX.2 attention builds its q/k norms with it
        class RMSNorm(torch.nn.Module):
            def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
                super().__init__()
                self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
                self.eps = eps
                self.weight = torch.nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype)) \
                    if elementwise_affine else None

            def forward(self, x):
                dims = tuple(range(-len(self.normalized_shape), 0))
                eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
                y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
                return y * self.weight if self.weight is not None else y
        torch.nn.RMSNorm = RMSNorm
    import torch.nn.functional as F
    if not hasattr(F, "scaled_dot_product_attention"):  # 2.0; the attention processors check for it
        def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
            q, k, v = query, key, value
            s = (q @ k.transpose(-2, -1)) * (scale if scale is not None else q.shape[-1] ** -0.5)
            if is_causal:
                s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
            if attn_mask is not None:
                s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
            return s.softmax(-1) @ v
        F.scaled_dot_product_attention = sdpa
    for name in ("xpu", "mps", "mtia"):  # device backends newer than 1.13: present, unavailable
        if not hasattr(torch, name):
            setattr(torch, name, _AbsentBackend("torch." + name))
    for name in ("torch.distributed._functional_collectives", "torch.distributed.device_mesh",
                 "torch.nn.attention.flex_attention"):
        try:
            importlib.import_module(name)
        except ImportError:
            stub_torch_module(name)


def source_tree(var, package):
    root = os.environ.get(var)
    if not root:
        sys.exit(f"{var} is not set (see the header of {sys.argv[0]})")
    for cand in (os.path.join(root, "src"), root):
        if os.path.isdir(os.path.join(cand, package)):
            return cand
    sys.exit(f"{var}={root} holds no {package}/ (nor src/{package}/)")


def setup_client_env(client, work):
    """sys.path for the source trees, fake dist-info (diffusers reads versions from package metadata)."""
    install_torch_shims()
    install_safetensors_shim()
    site = os.path.join(work, "site")
    os.makedirs(site, exist_ok=True)
    dists = [("safetensors", "0.8.0"), ("transformers", "4.57.1")]
    wanted = ["COMFYUI_SRC", "EINOPS_SRC"] if client == "comfyui" else \
        ["DIFFUSERS_SRC", "PEFT_SRC", "ACCELERATE_SRC", "HF_HUB_SRC"]
    for var, package, version, _ in SOURCES:
        if var in wanted:
            sys.path.insert(0, source_tree(var, package))
            if version:
                dists.append((package, version))
    for package, version in dists:
        d = os.path.join(site, f"{package}-{version}.dist-info")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: {version}\n")
        with open(os.path.join(d, "top_level.txt"), "w") as f:
            f.write(package + "\n")
    sys.path.insert(0, site)
    stubs = ["transformers", "tokenizers"] + (COMFY_STUBS if client == "comfyui" else [])
    sys.meta_path.insert(0, StubFinder(stubs))
    import transformers
    transformers.__version__ = "4.57.1"  # peft parses it


# ============================================================================ reference and comparison
def reference(onetrainer_file):
    """diffusers module -> up @ down * alpha / rank (float64), from the onetrainer file."""
    sd = st_load_file(onetrainer_file)
    ref = {}
    for k, down in sd.items():
        if not k.endswith(".lora_down.weight"):
            continue
        base = k[: -len(".lora_down.weight")]
        up = sd[base + ".lora_up.weight"].double()
        alpha = float(sd[base + ".alpha"]) if base + ".alpha" in sd else down.shape[0]
        module = base[len("transformer."):] if base.startswith("transformer.") else base
        ref[module] = up @ down.double() * (alpha / down.shape[0])
    return ref


def pattern(module):
    return re.sub(r"\.\d+(?=\.)", ".*", module)


def collapse(modules, limit=6):
    """'layers.*.attention.to_q (2), ...' from module names."""
    counts = {}
    for m in modules:
        counts[pattern(m)] = counts.get(pattern(m), 0) + 1
    items = [f"{p}" + (f" ({n})" if n > 1 else "") for p, n in sorted(counts.items())]
    return ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def swap_halves(t):
    a, b = t.chunk(2, dim=0)
    return __import__("torch").cat([b, a], dim=0)


def compare(ref, got, stray):
    """ref, got: diffusers module -> delta (got only where the client changed the module's weight).
    stray: client weight names that changed where no reference delta maps. Returns (summary, detail)."""
    ok, missing, scaled, swapped, wrong = [], [], {}, [], []
    for m, r in ref.items():
        g = got.get(m)
        if g is None or float(g.abs().max()) == 0:
            missing.append(m)
            continue
        g = g.double()
        nr = float(r.norm())
        if float((g - r).norm()) <= TOL * nr:
            ok.append(m)
            compare.worst = max(compare.worst, float((g - r).norm()) / nr)
        elif g.shape[0] % 2 == 0 and float((swap_halves(g) - r).norm()) <= TOL * nr:
            swapped.append(m)
        else:
            c = float((g * r).sum() / (r * r).sum())
            if float((g - c * r).norm()) <= 1e-4 * nr:
                scaled.setdefault(round(c, 4), []).append(m)
            else:
                wrong.append((m, float((g - r).norm()) / nr))
    extra = sorted(set(got) - set(ref)) + sorted(stray)
    detail = []
    if len(ok) == len(ref) and not extra:
        return "exact", detail
    applied = len(ref) - len(missing)
    parts = []
    if applied == 0 and not extra:
        parts.append("nothing applied")
    elif scaled and not missing and not swapped and not wrong and len(scaled) == 1 and not ok:
        c = next(iter(scaled))
        parts.append(f"{c:g}× too large" if c > 1 else f"{c:g}× (too small)")
    else:
        if missing:
            parts.append(f"partial: {applied} of {len(ref)} layers; missing {collapse(missing, 3)}")
        for c, ms in sorted(scaled.items()):
            parts.append(f"{c:g}× on {collapse(ms, 3)}")
        if swapped:
            parts.append(f"halves swapped: {collapse(swapped, 3)}")
        if wrong:
            parts.append(f"wrong: {collapse([m for m, _ in wrong], 3)}")
    if extra:
        parts.append(f"changed without reference: {collapse(extra, 3)}")
    def lines(label, ms):
        counts = {}
        for m in ms:
            counts[pattern(m)] = counts.get(pattern(m), 0) + 1
        return [f"{label}: {p}" + (f" (x{n})" if n > 1 else "") for p, n in sorted(counts.items())]
    detail += lines("not applied", missing)
    for c, ms in sorted(scaled.items()):
        detail += lines(f"scaled {c:g}x", ms)
    detail += lines("shift/scale halves swapped", swapped)
    detail += [f"wrong (rel. error {e:.3g}): {m}" for m, e in wrong]
    detail += lines("changed without reference", extra)
    detail.append(f"exact: {len(ok)} of {len(ref)} layers")
    return "; ".join(parts), detail


compare.worst = 0.0  # largest relative error among layers counted exact (printed by the driver)


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage().splitlines()[0][:300])


def log_lines(who, lines, limit=8):
    # "lora key not loaded: KEY" once per key -> one line per message with the adapter names
    grouped, rest = {}, []
    for line in dict.fromkeys(lines):
        m = re.match(r"^(lora key not loaded|NOT LOADED): (\S+)$", line)
        if m:
            name = re.sub(r"\.(alpha|lora_(up|down|A|B)\.weight)$", "", m.group(2))
            grouped.setdefault(m.group(1), {})[name] = True
        else:
            rest.append(line)
    lines = [f"{msg} ({len(names)} adapters): {', '.join(names)}" for msg, names in grouped.items()] + rest
    out = [f"{who} log: {l}" for l in lines[:limit]]
    return out + ([f"{who} log: … {len(lines) - limit} more lines"] if len(lines) > limit else [])


def rejected(e):
    first = (str(e).strip().splitlines() or [""])[0]
    first = re.sub(r"([{\[])('[^']*')[^}\]]*([}\]])", r"\1\2, …\3", first)  # long name sets: first + …
    return f"rejected: {type(e).__name__}: {first[:200]}"


def where_raised(e):
    """The innermost frames, to tell a client's own refusal from a torch-1.13 gap."""
    import traceback
    frames = traceback.extract_tb(e.__traceback__)[-4:]
    return [f"raised at {f.filename}:{f.lineno} ({f.name}): {(f.line or '').strip()[:120]}" for f in frames]


# ============================================================================ ComfyUI
# FLUX.2 layers that ComfyUI's flux_to_diffusers (written for FLUX.1) does not name: diffusers'
# scripts/convert_flux2_to_diffusers.py FLUX2_TRANSFORMER_KEYS_RENAME_DICT (straight renames, no swap).
FLUX2_EXTRA = {"time_in.in_layer": "time_guidance_embed.timestep_embedder.linear_1",
               "time_in.out_layer": "time_guidance_embed.timestep_embedder.linear_2",
               "guidance_in.in_layer": "time_guidance_embed.guidance_embedder.linear_1",
               "guidance_in.out_layer": "time_guidance_embed.guidance_embedder.linear_2",
               "double_stream_modulation_img.lin": "double_stream_modulation_img.linear",
               "double_stream_modulation_txt.lin": "double_stream_modulation_txt.linear",
               "single_stream_modulation.lin": "single_stream_modulation.linear"}


def comfy_keymap(family, cfg, dsd):
    """diffusers key -> native key | (native key, (dim, start, length)[, fn]): ComfyUI's own tables."""
    import comfy.utils
    if family == "zimage":
        n_layers = 1 + max(int(k.split(".")[1]) for k in dsd if k.startswith("layers."))
        return comfy.utils.z_image_to_diffusers({"n_layers": n_layers, "dim": cfg["dim"],
                                                 "n_refiner_layers": cfg["n_refiner_layers"]})
    depth = cfg["num_layers"]
    km = comfy.utils.flux_to_diffusers({"depth": depth, "depth_single_blocks": cfg["num_single_layers"],
                                        "hidden_size": cfg["num_attention_heads"] * cfg["attention_head_dim"]})
    for native, diff in FLUX2_EXTRA.items():
        for end in ("weight", "bias"):
            km[f"{diff}.{end}"] = f"{native}.{end}"
    return km


def comfy_native_sd(dsd, keymap):
    """Convert a diffusers state dict with ComfyUI's table, as convert_diffusers_mmdit does."""
    import torch
    out, left = {}, set(dsd)
    for k, t in keymap.items():
        if k not in dsd:
            continue
        w = dsd[k]
        left.discard(k)
        if isinstance(t, str):
            out[t] = w
            continue
        fn = t[2] if len(t) > 2 else (lambda a: a)
        if t[1] is None:
            out[t[0]] = fn(w)
            continue
        dim, start, length = t[1]
        old = out.get(t[0])
        size = max(start + length, old.shape[dim] if old is not None else 0)
        new = torch.zeros([size if i == dim else s for i, s in enumerate(w.shape)], dtype=w.dtype)
        if old is not None:
            new.narrow(dim, 0, old.shape[dim]).copy_(old)
        new.narrow(dim, start, length).copy_(fn(w))
        out[t[0]] = new
    if left:
        raise RuntimeError(f"ComfyUI's table does not name {sorted(left)[:8]}")
    return out


def comfy_tiny_overrides(family, cfg):
    """ComfyUI detects head counts, RoPE axes etc. from the real models' sizes; the tiny models need
    them from their config.json (all else comes from ComfyUI's own detection)."""
    if family == "zimage":
        return {"n_heads": cfg["n_heads"], "n_kv_heads": cfg["n_kv_heads"], "axes_dims": cfg["axes_dims"],
                "axes_lens": cfg["axes_lens"], "rope_theta": cfg["rope_theta"],
                "n_refiner_layers": cfg["n_refiner_layers"], "ffn_dim_multiplier": 8.0 / 3.0, "multiple_of": 1,
                "z_image_modulation": True, "time_scale": 1000.0}
    return {"axes_dim": cfg["axes_dims_rope"], "theta": cfg["rope_theta"], "num_heads": cfg["num_attention_heads"],
            "mlp_ratio": cfg["mlp_ratio"], "out_channels": cfg.get("out_channels") or cfg["in_channels"]}


class ComfyUI:
    """The tiny transformer loaded as ComfyUI loads a diffusion model (its own model detection and
    load_diffusion_model_state_dict, on the weights converted with its own diffusers table)."""
    name = "ComfyUI"
    loggers = [""]  # ComfyUI logs on the root logger ("lora key not loaded: …")

    def __init__(self, family, transformer_dir):
        import torch
        import comfy.options
        import comfy.cli_args
        comfy.cli_args.args.cpu = True  # what `main.py --cpu` sets
        import comfy.sd, comfy.utils, comfy.lora, comfy.model_base, comfy.model_detection, comfy.supported_models

        import comfy.model_patcher as mp
        # torch.dtype.itemsize (2.1) cannot be added to 1.13's immutable dtype type; the one function on
        # this path that reads it (a VRAM estimate) gets the same formula with element_size().
        def estimate_vram(model, key):
            weight, _, _ = mp.get_key_weight(model, key)
            if weight is None:
                return 0
            dtype = getattr(model, "manual_cast_dtype", torch.float32) or weight.dtype
            return weight.numel() * torch.empty((), dtype=dtype).element_size() * mp.LOWVRAM_PATCH_ESTIMATE_MATH_FACTOR
        mp.low_vram_patch_estimate_vram = estimate_vram

        cfg = json.load(open(os.path.join(transformer_dir, "config.json")))
        dsd = {}
        for f in sorted(os.listdir(transformer_dir)):
            if f.endswith(".safetensors"):
                dsd.update(st_load_file(os.path.join(transformer_dir, f)))
        self.dsd = dsd = {k: v.float() for k, v in dsd.items()}
        self.keymap = keymap = comfy_keymap(family, cfg, dsd)
        native = comfy_native_sd(dsd, keymap)

        detect = comfy.model_detection.detect_unet_config
        def detect_tiny(state_dict, key_prefix, metadata=None):
            c = detect(state_dict, key_prefix, metadata=metadata)
            c.update(comfy_tiny_overrides(family, cfg))
            if family == "zimage" and key_prefix + "cap_pad_token" in state_dict:
                c["pad_tokens_multiple"] = 32  # ComfyUI's rule, applied only in its dim-3840 branch
            return c
        comfy.model_detection.detect_unet_config = detect_tiny
        if family == "zimage":  # ZImage is recognised by dim 3840; let the tiny dim pick the same class
            comfy.supported_models.ZImage.unet_config = dict(comfy.supported_models.ZImage.unet_config, dim=cfg["dim"])
        # ComfyUI's Z-Image sizes t_embedder by min(dim, 1024) and a 256-wide output, which equals diffusers'
        # only for dim >= 1024; the tiny model's few such parameters are resized to the checkpoint's shapes
        # before ComfyUI loads the weights (names, and so the LoRA mapping, are untouched).
        load_weights = comfy.model_base.BaseModel.load_model_weights
        def load_weights_resized(self, sd, unet_prefix="", **kw):
            for name, p in list(self.diffusion_model.named_parameters()):
                w = sd.get(unet_prefix + name)
                if w is not None and w.shape != p.shape:
                    mod_name, _, attr = name.rpartition(".")
                    mod = self.diffusion_model.get_submodule(mod_name)
                    setattr(mod, attr, torch.nn.Parameter(torch.empty(w.shape, dtype=p.dtype), requires_grad=False))
                    print(f"resized {name} {tuple(p.shape)} -> {tuple(w.shape)} (tiny-model shape)")
            return load_weights(self, sd, unet_prefix, **kw)
        comfy.model_base.BaseModel.load_model_weights = load_weights_resized
        self.patcher = comfy.sd.load_diffusion_model_state_dict(dict(native), model_options={"dtype": torch.float32})
        model_sd = self.patcher.model.state_dict()
        for k, w in native.items():
            mk = "diffusion_model." + k
            if mk not in model_sd or model_sd[mk].shape != w.shape:
                raise RuntimeError(f"ComfyUI model built from the tiny weights lacks {mk} {tuple(w.shape)}")
        self.orig = {k: v.detach().clone() for k, v in model_sd.items()}

    def load(self, path):
        """One LoRA file at strength 1, as the LoraLoaderModelOnly node does: load_torch_file ->
        load_lora_for_models -> patch_model. Returns the patched state dict and the patcher's patches
        (weight key -> [(strength, adapter, strength_model, offset, function)]); the model is left at
        its base weights."""
        import comfy.sd, comfy.utils
        self.patcher.model.load_state_dict(self.orig)  # each file starts from the base weights
        lora = comfy.utils.load_torch_file(path, safe_load=True)
        patched, _ = comfy.sd.load_lora_for_models(self.patcher, None, lora, 1.0, 0)
        patched.patch_model()
        now = {k: v.detach().clone() for k, v in patched.model.state_dict().items()}
        patches = {k: list(v) for k, v in patched.patches.items()}
        patched.unpatch_model()
        return now, patches


class Diffusers:
    """The tiny transformer in the family's diffusers pipeline (no text encoder / VAE:
    load_lora_weights only touches the transformer)."""
    name = "diffusers"
    loggers = ["diffusers", "peft"]

    def __init__(self, family, transformer_dir):
        import torch
        import diffusers
        if family == "zimage":
            from diffusers import ZImagePipeline as Pipe, ZImageTransformer2DModel as Model
        else:
            from diffusers import Flux2KleinPipeline as Pipe, Flux2Transformer2DModel as Model
        self.Pipe = Pipe
        self.base = Model.from_pretrained(transformer_dir, torch_dtype=torch.float32)
        self.orig = {k: v.detach().clone() for k, v in self.base.state_dict().items()}

    def load(self, path):
        """One LoRA file: Pipeline.load_lora_weights -> fuse_lora(lora_scale=1). Returns the pipeline
        (its transformer keeps the injected PEFT layers) and the fused weights under the base names."""
        pipe = self.Pipe(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=copy.deepcopy(self.base))
        pipe.load_lora_weights(path, adapter_name="check")
        pipe.fuse_lora(components=["transformer"], lora_scale=1.0)
        now = {}
        for k, v in pipe.transformer.state_dict().items():
            if ".lora_" in k:
                continue
            now[k.replace(".base_layer.", ".")] = v.detach()
        return pipe, now


@contextlib.contextmanager
def client_log(loggers, warns=True):
    """The clients' warnings (log records of `loggers`, and Python warnings when `warns`) while loading."""
    cap = LogCapture()
    for name in loggers:
        logging.getLogger(name).addHandler(cap)
    try:
        if not warns:
            yield cap
            return
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            try:
                yield cap
            finally:
                cap.lines += [str(w.message).splitlines()[0][:300] for w in ws]
    finally:
        for name in loggers:
            logging.getLogger(name).removeHandler(cap)


def run_comfyui(family, transformer_dir, loras, ref):
    import torch
    client = ComfyUI(family, transformer_dir)
    # Where each diffusers module's weight lives in ComfyUI's model.
    where = {}
    for k, t in client.keymap.items():
        if k.endswith(".weight") and k in client.dsd:
            where[k[: -len(".weight")]] = ("diffusion_model." + t, None, None) if isinstance(t, str) else \
                ("diffusion_model." + t[0], t[1], t[2] if len(t) > 2 else None)
    orig = client.orig
    results = {}
    for fmt, path in loras.items():
        try:
            with client_log(client.loggers, warns=False) as cap:
                now, _ = client.load(path)
        except Exception as e:
            results[fmt] = {"summary": rejected(e), "detail": where_raised(e) + log_lines("client", cap.lines)}
            continue
        change = {k: now[k].double() - orig[k].double() for k in orig}
        got, covered = {}, {}
        for m, (wk, off, fn) in where.items():
            d = change[wk] if off is None else change[wk].narrow(*off)
            if fn is not None:
                d = fn(d)  # swap_scale_shift is its own inverse
            if float(d.abs().max()) > 0:
                got[m] = d
            mask = covered.setdefault(wk, torch.zeros_like(change[wk], dtype=torch.bool))
            (mask if off is None else mask.narrow(*off)).fill_(True)
        # changes outside every diffusers module's slice (biases, norms, unmapped weights)
        stray = [k for k, d in change.items()
                 if float(d.abs().max()) > 0 and (k not in covered or bool((d[~covered[k]] != 0).any()))]
        summary, detail = compare(ref, got, stray)
        results[fmt] = {"summary": summary, "detail": log_lines("ComfyUI", cap.lines) + detail}
    return results


# ============================================================================ diffusers
def run_diffusers(family, transformer_dir, loras, ref):
    client = Diffusers(family, transformer_dir)
    results = {}
    for fmt, path in loras.items():
        try:
            with client_log(client.loggers) as cap:
                _, now = client.load(path)
        except Exception as e:
            results[fmt] = {"summary": rejected(e), "detail": where_raised(e) + log_lines("client", cap.lines)}
            continue
        got, stray = {}, []
        for k, v in now.items():
            d = v.double() - client.orig[k].double()
            if float(d.abs().max()) == 0:
                continue
            if k.endswith(".weight"):
                got[k[: -len(".weight")]] = d
            else:
                stray.append(k)
        summary, detail = compare(ref, got, stray)
        results[fmt] = {"summary": summary, "detail": log_lines("diffusers/peft", cap.lines) + detail}
    return results


def client_main(a):
    setup_client_env(a.client, a.work)
    logging.basicConfig(level=logging.WARNING)  # the clients report dropped keys as warnings
    loras = {f: os.path.join(a.loras, f + ".safetensors") for f in FORMATS}
    ref = reference(loras["onetrainer"])
    run = run_comfyui if a.client == "comfyui" else run_diffusers
    out = run(a.family, a.transformer, loras, ref)
    out["_worst_exact_rel_error"] = compare.worst
    with open(a.result, "w") as f:
        json.dump(out, f, indent=1)
    sys.stdout.flush()
    os._exit(0)  # skip ComfyUI's ModelPatcher.__del__ noise at interpreter shutdown


# ============================================================================ fixtures
# tests/fixtures/lora_clients/<client>-<family>.json, read by src/lora/clients_test.cc: what the client's
# own loading code does with every naming form of a LoRA on the family's golden model. Each form is probed
# with a file holding one random rank-4 adapter (alpha 2) per LoRA-able Linear; what the client adds to
# its weights is taken apart into pieces (rows of one file module's up @ down, a factor, a half swap, the
# client weight and rows they land on), matched back to the file's tensors, and replayed against the
# client's real weight changes before it is written. A form is
#   {"prefix", "names", "flat", "pair", "alpha", "metadata": the naming form,
#    "error": null | "ExceptionType: first line" (the client refused the file; modules empty),
#    "scale": "alpha/rank" | "metadata" | "one" | null (nothing taken): the factor on up @ down,
#    "modules": {file stem: [{"rows": [first, count], "target": client weight, "target_rows": [first, count],
#                             "swap_halves": bool}]}}   (stems the client drops are absent)
# where the client adds rows [first, first + count) of scale * up @ down (halves swapped) onto those rows of
# its weight `target`, named as the file's "namespace" says: ComfyUI's model names without diffusion_model.
# and .weight ("native"), or diffusers module paths ("diffusers").
PROBE_RANK, PROBE_ALPHA = 4, 2.0
PREFIXES = ["diffusion_model.", "transformer.", "lora_unet_", ""]  # "lora_unet_" names are flattened
GOLDEN = {"zimage": "zimage_transformer/weights", "flux2-klein": "flux2_transformer/weights"}
FIXTURE_CLIENT = {"comfyui": ("ComfyUI", "ComfyUI fe2511468d6b", "native"),  # name, version, namespace
                  "diffusers": ("diffusers", "diffusers v0.40.0, peft v0.20.0", "diffusers")}
# The families' native module names, as src/models/<family>/lora_keys.cc has them: native template ->
# the diffusers modules whose weights are its row blocks, in order (and whether its two row halves are
# the diffusers module's swapped). {n} is a block number; a module without a rule keeps its name.
_ZB = ["layers.{n}", "noise_refiner.{n}", "context_refiner.{n}"]
_FD, _FO, _FS = "transformer_blocks.{n}.", "double_blocks.{n}.", "single_transformer_blocks.{n}."
NATIVE = {
    "zimage": [(b + ".attention.qkv", [b + ".attention.to_q", b + ".attention.to_k", b + ".attention.to_v"], False)
               for b in _ZB] +
              [(b + ".attention.out", [b + ".attention.to_out.0"], False) for b in _ZB] +
              [("x_embedder", ["all_x_embedder.2-1"], False),
               ("final_layer.linear", ["all_final_layer.2-1.linear"], False),
               ("final_layer.adaLN_modulation.1", ["all_final_layer.2-1.adaLN_modulation.1"], False)],
    "flux2-klein": [
        ("img_in", ["x_embedder"], False), ("txt_in", ["context_embedder"], False),
        ("time_in.in_layer", ["time_guidance_embed.timestep_embedder.linear_1"], False),
        ("time_in.out_layer", ["time_guidance_embed.timestep_embedder.linear_2"], False),
        ("double_stream_modulation_img.lin", ["double_stream_modulation_img.linear"], False),
        ("double_stream_modulation_txt.lin", ["double_stream_modulation_txt.linear"], False),
        ("single_stream_modulation.lin", ["single_stream_modulation.linear"], False),
        ("final_layer.linear", ["proj_out"], False),
        ("final_layer.adaLN_modulation.1", ["norm_out.linear"], True),
        (_FO + "img_attn.qkv", [_FD + "attn.to_q", _FD + "attn.to_k", _FD + "attn.to_v"], False),
        (_FO + "txt_attn.qkv", [_FD + "attn.add_q_proj", _FD + "attn.add_k_proj", _FD + "attn.add_v_proj"], False),
        (_FO + "img_attn.proj", [_FD + "attn.to_out.0"], False), (_FO + "txt_attn.proj", [_FD + "attn.to_add_out"], False),
        (_FO + "img_mlp.0", [_FD + "ff.linear_in"], False), (_FO + "img_mlp.2", [_FD + "ff.linear_out"], False),
        (_FO + "txt_mlp.0", [_FD + "ff_context.linear_in"], False), (_FO + "txt_mlp.2", [_FD + "ff_context.linear_out"], False),
        ("single_blocks.{n}.linear1", [_FS + "attn.to_qkv_mlp_proj"], False),
        ("single_blocks.{n}.linear2", [_FS + "attn.to_out"], False)],
}


def native_name(family, module):
    """diffusers module -> (native module, row block, blocks)."""
    for native, parts, _ in NATIVE[family]:
        for i, part in enumerate(parts):
            m = re.fullmatch(re.escape(part).replace(r"\{n\}", r"(\d+)"), module)
            if m:
                return native.replace("{n}", m.group(1)) if m.groups() else native, i, len(parts)
    return module, 0, 1


def probe_modules(family, weights_dir):
    """The probe's modules per naming: {"diffusers": {module: (out, in)}, "native": {...}}; every 2-D
    `.weight` of the golden model is a Linear's."""
    with SafeOpen(os.path.join(weights_dir, "diffusion_pytorch_model.safetensors")) as f:
        header = f._header
    diffusers = {k[: -len(".weight")]: tuple(h["shape"]) for k, h in header.items()
                 if k.endswith(".weight") and len(h["shape"]) == 2}
    native = {}
    for m, (out, inp) in diffusers.items():
        name, _, blocks = native_name(family, m)
        native[name] = (out * blocks, inp)
    return {"diffusers": dict(sorted(diffusers.items())), "native": dict(sorted(native.items()))}


def probe_forms():
    for prefix in PREFIXES:
        for names in ("diffusers", "native"):
            for pair in ("A/B", "down/up"):
                for alpha in ("tensor", "none"):
                    for metadata in ("none", "peft-prefixed"):
                        if metadata == "none" or (pair == "A/B" and alpha == "none"):
                            yield {"prefix": prefix, "names": names, "flat": prefix == "lora_unet_", "pair": pair,
                                   "alpha": alpha, "metadata": metadata}


def probe_adapters(modules):
    """module -> (down [rank, in], up [out, rank]): random fp32, seeded by the module name."""
    import torch
    out = {}
    for m, (rows, cols) in modules.items():
        g = torch.Generator().manual_seed(zlib.crc32(m.encode()))
        out[m] = (torch.randn(PROBE_RANK, cols, generator=g), torch.randn(rows, PROBE_RANK, generator=g))
    return out


def write_probe(path, form, adapters):
    """The form's file; returns stem -> (down, up)."""
    import torch
    a_key, b_key = (".lora_A.weight", ".lora_B.weight") if form["pair"] == "A/B" else (".lora_down.weight", ".lora_up.weight")
    sd, stems = {}, {}
    for m, (down, up) in adapters.items():
        name = m.replace(".", "_") if form["flat"] else m
        stem = form["prefix"] + name
        sd[stem + a_key], sd[stem + b_key] = down, up
        if form["alpha"] == "tensor":
            sd[stem + ".alpha"] = torch.tensor(PROBE_ALPHA)
        stems[stem] = (down, up)
    metadata = None
    if form["metadata"] == "peft-prefixed":  # as diffusers' save_lora_weights writes the PEFT config
        config = {"r": PROBE_RANK, "lora_alpha": int(PROBE_ALPHA), "peft_type": "LORA", "rank_pattern": {},
                  "alpha_pattern": {}, "bias": "none", "lora_dropout": 0.0, "use_dora": False, "use_rslora": False,
                  "target_modules": sorted(s[len(form["prefix"]):] for s in stems)}
        metadata = {"lora_adapter_metadata": json.dumps({"transformer." + k: v for k, v in config.items()}, sort_keys=True),
                    "format": "pt"}
    st_save_file(sd, path, metadata)
    return stems


def comfyui_deltas(client, path):
    """What ComfyUI adds for one file: [(weight, first row, delta)], one per patch, each computed by
    ComfyUI's calculate_weight on a zero weight; and the real change of every model weight."""
    import torch
    import comfy.lora
    now, patches = client.load(path)
    out = []
    for key, plist in sorted(patches.items()):
        if not (key.startswith("diffusion_model.") and key.endswith(".weight")):
            raise RuntimeError(f"probe: ComfyUI patches {key}, not a diffusion model weight")
        for p in plist:
            d = comfy.lora.calculate_weight([p], torch.zeros_like(client.orig[key]), key)
            start, count = (0, d.shape[0]) if p[3] is None else (p[3][1], p[3][2])
            if p[3] is not None and p[3][0] != 0:
                raise RuntimeError(f"probe: ComfyUI patches {key} along dim {p[3][0]}")
            if float(d[:start].abs().sum()) or float(d[start + count:].abs().sum()):
                raise RuntimeError(f"probe: ComfyUI's patch of {key} changes rows outside its slice")
            out.append((key[len("diffusion_model."): -len(".weight")], start, d[start:start + count]))
    change = {(k[len("diffusion_model."): -len(".weight")] if k.endswith(".weight") else k): now[k].double() - v.double()
              for k, v in client.orig.items()}
    return out, change


def diffusers_deltas(client, path):
    """What diffusers adds for one file: [(module, 0, delta)], one per injected LoRA layer (PEFT's
    get_delta_weight); and the real change of every transformer weight after fuse_lora."""
    from peft.tuners.lora import LoraLayer
    pipe, now = client.load(path)
    out = []
    for name, module in pipe.transformer.named_modules():
        if isinstance(module, LoraLayer) and "check" in module.lora_A:
            out.append((name, 0, module.get_delta_weight("check").detach()))
    change = {(k[: -len(".weight")] if k.endswith(".weight") else k): v.double() - client.orig[k].double()
              for k, v in now.items()}
    return out, change


def match_delta(delta, products):
    """The piece of a probe module that a client delta is: (stem, first row, factor, halves swapped),
    where delta = factor * rows [first, first + len) of the stem's up @ down (halves swapped)."""
    d = delta.double()
    rows = d.shape[0]
    if float(d[0].norm()) == 0:
        raise RuntimeError("probe: a client delta with a zero first row")
    hits = []
    for stem, p in products.items():
        if p.shape[1] != d.shape[1]:
            continue
        cos = (p @ d[0]) / (p.norm(dim=1) * d[0].norm())
        for j in (cos.abs() > 1 - 1e-6).nonzero().flatten().tolist():
            for swap in (False, True):
                if swap and rows % 2:
                    continue
                start = j - rows // 2 if swap else j
                if start < 0 or start + rows > p.shape[0]:
                    continue
                block = p[start:start + rows]
                if swap:
                    block = swap_halves(block)
                factor = float((d * block).sum() / (block * block).sum())
                if float((d - factor * block).abs().max()) <= 1e-5 * float(d.abs().max()):
                    hits.append((stem, start, factor, swap))
    if len(hits) != 1:
        raise RuntimeError(f"probe: a client delta of {rows} rows matches {len(hits)} probe pieces: {hits[:4]}")
    return hits[0]


def replay(form, products):
    """The fixture form's meaning, as clients_test.cc replays it: client weight -> added delta."""
    scale = {"alpha/rank": PROBE_ALPHA / PROBE_RANK, "metadata": PROBE_ALPHA / PROBE_RANK, "one": 1.0}.get(form["scale"], 1.0)
    out = {}
    for stem, pieces in form["modules"].items():
        d = products[stem] * scale
        for piece in pieces:
            (first, count), target, (at, _) = piece["rows"], piece["target"], piece["target_rows"]
            part = d[first:first + count]
            if piece["swap_halves"]:
                part = swap_halves(part)
            out.setdefault(target, []).append((at, part))
    return out


def verify(form, products, change):
    """Largest relative error of the replayed form against the client's real weight changes."""
    want = replay(form, products)
    worst = 0.0
    for target, real in change.items():
        pred = real * 0
        for at, part in want.pop(target, []):
            pred[at:at + part.shape[0]] += part
        scale = max(float(real.abs().max()), float(pred.abs().max()))
        if scale:
            worst = max(worst, float((pred - real).abs().max()) / scale)
    if want:
        raise RuntimeError(f"probe: pieces land on weights the client does not have: {sorted(want)[:4]}")
    return worst


def error_text(e, path):
    return rejected(e)[len("rejected: "):].replace(path, "<file>").replace(os.path.dirname(path), "<dir>")


def probe_form(client, deltas, form, path, adapters):
    """One fixture form: write the probe file, load it with the client, take the client's deltas apart."""
    stems = write_probe(path, form, adapters)
    products = {s: up.double() @ down.double() for s, (down, up) in stems.items()}
    entry = dict(form, error=None, scale=None, modules={})
    try:
        with client_log(client.loggers) as cap:
            pieces, change = deltas(client, path)
    except Exception as e:
        entry["error"] = error_text(e, path)
        return entry, 0.0, where_raised(e) + cap.lines
    factors = []
    for target, at, delta in pieces:
        if float(delta.abs().max()) == 0:
            continue  # an adapter the client made but filled with nothing
        stem, first, factor, swap = match_delta(delta, products)
        factors.append(factor)
        entry["modules"].setdefault(stem, []).append(
            {"rows": [first, delta.shape[0]], "target": target, "target_rows": [at, delta.shape[0]], "swap_halves": swap})
    for stem in entry["modules"]:
        entry["modules"][stem].sort(key=lambda piece: (piece["rows"], piece["target"]))
    if factors:
        lo, hi = min(factors), max(factors)
        half = PROBE_ALPHA / PROBE_RANK
        if hi - lo > 1e-5 * abs(hi):
            raise RuntimeError(f"probe {form}: the client's scale differs between modules ({lo:g} .. {hi:g})")
        if abs(lo - 1) <= 1e-5:
            entry["scale"] = "one"
        elif abs(lo - half) <= 1e-5 and form["alpha"] == "tensor":
            entry["scale"] = "alpha/rank"
        elif abs(lo - half) <= 1e-5 and form["metadata"] != "none":
            entry["scale"] = "metadata"
        else:
            raise RuntimeError(f"probe {form}: the client scales up @ down by {lo:g}, neither 1 nor the probe's alpha / rank")
    worst = verify(entry, products, change)
    if worst > 1e-6:
        raise RuntimeError(f"probe {form}: the pieces found miss the client's weight changes (rel. error {worst:.3g})")
    return entry, worst, cap.lines


def fixtures_client_main(a):
    """One client and family: probe every form, write DIR/<client>-<family>.json."""
    setup_client_env(a.client, a.work)
    weights = os.path.join(a.golden, GOLDEN[a.family])
    name, version, namespace = FIXTURE_CLIENT[a.client]
    if a.client == "comfyui":
        client, deltas = ComfyUI(a.family, weights), comfyui_deltas
        loading = ("comfy.utils.load_torch_file(file, safe_load=True) -> comfy.sd.load_lora_for_models(model, None, "
                   "lora, 1.0, 0) -> ModelPatcher.patch_model()")
    else:
        client, deltas = Diffusers(a.family, weights), diffusers_deltas
        loading = (f"diffusers.{client.Pipe.__name__}.load_lora_weights(file, adapter_name='check') -> "
                   "fuse_lora(components=['transformer'], lora_scale=1.0)")
        import torch
        linears = sorted(n for n, m in client.base.named_modules() if isinstance(m, torch.nn.Linear))
        if linears != sorted(probe_modules(a.family, weights)["diffusers"]):
            raise RuntimeError("the golden model's 2-D weights are not exactly its Linears")
    modules = probe_modules(a.family, weights)
    adapters = {names: probe_adapters(ms) for names, ms in modules.items()}
    fixture = {"client": name, "version": version, "loading_code": loading, "family": a.family,
               "model": "golden/" + GOLDEN[a.family], "namespace": namespace,
               "probe": {"rank": PROBE_RANK, "alpha": int(PROBE_ALPHA),
                         "modules": {names: len(ms) for names, ms in modules.items()}},
               "forms": []}
    path = os.path.join(a.work, f"probe-{a.client}-{a.family}.safetensors")
    worst = 0.0
    for form in probe_forms():
        entry, err, log = probe_form(client, deltas, form, path, adapters[form["names"]])
        fixture["forms"].append(entry)
        worst = max(worst, err)
        print(json.dumps(form), "->", entry["error"] or f"{len(entry['modules'])} modules, scale {entry['scale']}")
        for line in log_lines(name, log, limit=4):
            print("   ", line)
    os.remove(path)
    out = os.path.join(a.fixtures, f"{a.client}-{a.family}.json")
    with open(out, "w") as f:
        f.write(fixture_json(fixture))
    print(f"{out}: {len(fixture['forms'])} forms; largest relative error of a replayed form: {worst:.2g}")
    sys.stdout.flush()
    os._exit(0)  # skip ComfyUI's ModelPatcher.__del__ noise at interpreter shutdown


def fixture_json(fixture):
    """Sorted keys; one line per form header and per module, so diffs stay readable."""
    dump = lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False)
    lines = ["{"] + [f" {dump(k)}: {dump(fixture[k])}," for k in sorted(fixture) if k != "forms"] + [' "forms": [']
    for i, form in enumerate(fixture["forms"]):
        head = dump({k: v for k, v in form.items() if k != "modules"})[:-1] + ', "modules": {'
        mods = [f"   {dump(stem)}: {json.dumps(p, sort_keys=True, separators=(',', ':'))}"
                for stem, p in sorted(form["modules"].items())]
        end = "}}" + ("," if i + 1 < len(fixture["forms"]) else "")
        lines += [f"  {head}{end}"] if not mods else [f"  {head}", ",\n".join(mods), f"  {end}"]
    text = "\n".join(lines + [" ]", "}"]) + "\n"
    assert json.loads(text) == json.loads(json.dumps(fixture))
    return text


def check_fixtures(directory):
    """The fixtures' schema (what clients_test.cc reads), and a one-line summary per form."""
    problems = []
    for client in CLIENTS:
        for family in FAMILIES:
            path = os.path.join(directory, f"{client}-{family}.json")
            if not os.path.exists(path):
                problems.append(f"{path}: missing")
                continue
            fx = json.load(open(path))
            name, version, namespace = FIXTURE_CLIENT[client]
            if (fx["client"], fx["version"], fx["namespace"], fx["family"]) != (name, version, namespace, family):
                problems.append(f"{path}: header")
            keys = [tuple(f[k] for k in ("prefix", "names", "flat", "pair", "alpha", "metadata")) for f in fx["forms"]]
            want = [tuple(f[k] for k in ("prefix", "names", "flat", "pair", "alpha", "metadata")) for f in probe_forms()]
            if keys != want:
                problems.append(f"{path}: the forms are not the probe's {len(want)}")
            print(f"{os.path.basename(path)} ({fx['version']}; {fx['namespace']} names; probe modules: "
                  + ", ".join(f"{n} {c}" for n, c in fx["probe"]["modules"].items()) + ")")
            for f in fx["forms"]:
                label = f"{f['prefix'] or '(bare)'}{' flat' if f['flat'] else ''} {f['names']} {f['pair']} alpha {f['alpha']}" \
                        + (f" metadata {f['metadata']}" if f["metadata"] != "none" else "")
                if f["error"] is not None:
                    ok = isinstance(f["error"], str) and not f["modules"]
                    print(f"  {label}: refused: {f['error']}")
                else:
                    pieces = [p for ps in f["modules"].values() for p in ps]
                    ok = f["scale"] in ("alpha/rank", "metadata", "one") if pieces else f["scale"] is None
                    ok = ok and all(isinstance(p["rows"], list) and len(p["rows"]) == 2 and all(type(x) is int for x in p["rows"])
                                    and isinstance(p["target"], str) and type(p["swap_halves"]) is bool
                                    and isinstance(p["target_rows"], list) and type(p["target_rows"][0]) is int
                                    for p in pieces)
                    swapped = sorted({p["target"] for p in pieces if p["swap_halves"]})
                    print(f"  {label}: {len(f['modules'])} of {fx['probe']['modules'][f['names']]} modules taken"
                          + (f", {len(pieces)} pieces" if len(pieces) != len(f["modules"]) else "")
                          + (f", scale {f['scale']}" if pieces else "") + (f", halves swapped: {', '.join(swapped)}" if swapped else ""))
                if not ok:
                    problems.append(f"{path}: form {label}")
    for p in problems:
        print("SCHEMA: " + p)
    return not problems


def fixtures_driver(a):
    directory = os.path.abspath(a.fixtures)
    os.makedirs(directory, exist_ok=True)
    work = os.path.abspath(a.work) if a.work else tempfile.mkdtemp(prefix="lora-fixtures-")
    os.makedirs(work, exist_ok=True)
    for client in a.clients.split(","):
        for family in a.families.split(","):
            cmd = [sys.executable, os.path.abspath(__file__), "--fixtures", directory, "--client", client,
                   "--family", family, "--golden", os.path.abspath(a.golden), "--work", work]
            log = os.path.join(work, f"fixtures-{client}-{family}.log")
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
            with open(log, "w") as f:
                r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
            lines = open(log).read().strip().splitlines()
            if r.returncode:
                sys.exit(f"{client} / {family} failed ({r.returncode}); see {log}:\n" + "\n".join(lines[-12:]))
            print(lines[-1])
    if not a.work:
        shutil.rmtree(work)
    sys.exit(0 if check_fixtures(directory) else 1)


# ============================================================================ driver
def sh(cmd, log):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", DT_THREADS="1")
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")


def make_loras(a, family, preset):
    fam_dir = os.path.join(a.work, family)
    tiny = os.path.join(fam_dir, "tiny")
    log = os.path.join(a.work, "deltatrain.log")
    if not os.path.exists(os.path.join(tiny, "train.toml")):
        sh([a.deltatrain, "make-tiny", "--out", tiny, "--family", family], log)
    out = os.path.join(fam_dir, preset)
    os.makedirs(out, exist_ok=True)
    for fmt in FORMATS:
        path = os.path.join(out, fmt + ".safetensors")
        if os.path.exists(path) and not a.retrain:
            continue
        sets = dict(TRAIN, **{"lora.preset": preset, "output.format": fmt, "output.lora": path,
                              "output.run_dir": os.path.join(out, "run-" + fmt)})
        cmd = [a.deltatrain, "train", os.path.join(tiny, "train.toml")]
        for k, v in sets.items():
            cmd += ["--set", f"{k}={v}"]
        sh(cmd, log)
    return out, os.path.join(tiny, "base", "transformer")


def driver(a):
    a.work = os.path.abspath(a.work)
    os.makedirs(a.work, exist_ok=True)
    print(__doc__.split("\n\n")[0])
    print("Clients (source trees, see this script's header):")
    for var, _, _, where in SOURCES:
        print(f"  {var}={os.environ.get(var, '(unset)')}  [{where}]")
    print(f"deltatrain: {a.deltatrain}; train settings: " + " ".join(f"{k}={v}" for k, v in TRAIN.items()))
    print()
    tables = {}
    for group in a.groups.split(","):
        cells = {}
        for family in a.families.split(","):
            preset = GROUPS[group][family]
            lora_dir, transformer = make_loras(a, family, preset)
            for client in a.clients.split(","):
                result = os.path.join(lora_dir, f"result-{client}.json")
                cmd = [sys.executable, os.path.abspath(__file__), "--client", client, "--family", family,
                       "--transformer", transformer, "--loras", lora_dir, "--result", result, "--work", a.work]
                log = os.path.join(lora_dir, f"{client}.log")
                if os.path.exists(result):
                    os.remove(result)
                env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
                with open(log, "w") as f:
                    r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
                if r.returncode or not os.path.exists(result):
                    tail = open(log).read().strip().splitlines()[-1:] or ["?"]
                    cells[(family, client)] = {f: {"summary": f"client failed to run: {tail[0][:160]}", "detail": []} for f in FORMATS}
                else:
                    cells[(family, client)] = json.load(open(result))
        worst = max(float(c.get("_worst_exact_rel_error", 0)) for c in cells.values())
        tables[group] = cells
        presets = " / ".join(f"{FAMILIES[f]} `{GROUPS[group][f]}`" for f in a.families.split(","))
        cols = [(f, c) for f in a.families.split(",") for c in a.clients.split(",")]
        print(f"### presets: {presets}\n")
        print("| format | " + " | ".join(f"{FAMILIES[f]}: {CLIENTS[c]}" for f, c in cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for fmt in FORMATS:
            print(f"| {fmt} | " + " | ".join(cells[col][fmt]["summary"].replace("|", "\\|") for col in cols) + " |")
        print()
        for fmt in FORMATS:
            for f, c in cols:
                cell = cells[(f, c)][fmt]
                if cell["summary"] != "exact":
                    print(f"- {fmt} / {FAMILIES[f]} / {CLIENTS[c]}: {cell['summary']}")
                    for line in cell["detail"][: a.detail_lines]:
                        print(f"    {line}")
        print(f"(largest relative error among layers counted exact: {worst:.2g}; tolerance {TOL:g})\n")
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump({g: {f"{k[0]}/{k[1]}": v for k, v in t.items()} for g, t in tables.items()}, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deltatrain", default="build/deltatrain")
    p.add_argument("--work", help="folder for tiny models, LoRA files and results (required unless --fixtures; "
                   "there a temporary folder by default)")
    p.add_argument("--groups", default="default,full", help="preset groups: default (attn-mlp / blocks), full")
    p.add_argument("--families", default="zimage,flux2-klein")
    p.add_argument("--clients", default="comfyui,diffusers")
    p.add_argument("--retrain", action="store_true", help="rewrite LoRA files that exist")
    p.add_argument("--detail-lines", type=int, default=40)
    p.add_argument("--fixtures", metavar="DIR", help="instead: probe the clients on the golden models and write "
                   "DIR/<client>-<family>.json (tests/fixtures/lora_clients/, read by src/lora/clients_test.cc)")
    p.add_argument("--golden", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "golden"),
                   help="the golden models' folder (for --fixtures; default: ../shared/golden beside the checkout)")
    p.add_argument("--check-fixtures", metavar="DIR", help="instead: check the fixtures' schema and summarise them")
    # internal: one client process
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--family", help=argparse.SUPPRESS)
    p.add_argument("--transformer", help=argparse.SUPPRESS)
    p.add_argument("--loras", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.check_fixtures:
        sys.exit(0 if check_fixtures(a.check_fixtures) else 1)
    elif a.fixtures:
        (fixtures_client_main if a.client else fixtures_driver)(a)
    elif not a.work:
        p.error("--work is required")
    elif a.client:
        client_main(a)
    else:
        driver(a)


if __name__ == "__main__":
    main()
