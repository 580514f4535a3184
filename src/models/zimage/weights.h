// Z-Image transformer checkpoints: diffusers folders and single files, and ComfyUI / original
// single files (specs/z-image.md §10), all read into diffusers names.
#pragma once
#include <map>
#include <optional>
#include <string>

#include <ATen/Tensor.h>

#include "models/family.h"
#include "models/zimage/config.h"
#include "models/zimage/transformer.h"

namespace dt {

class Checkpoint;

namespace zimage {

// True for a Z-Image (not Omni) transformer checkpoint in any supported layout and prefix.
bool is_zimage_checkpoint(const Checkpoint& ck);

// What `inspect` says: "zimage transformer, diffusers names, dim 3840 (Z-Image 6B), 30 layers";
// empty for a checkpoint of another kind.
std::string describe_checkpoint(const Checkpoint& ck);

// A ComfyUI / original module or tensor name in diffusers naming ("x_embedder.weight" →
// "all_x_embedder.2-1.weight", "layers.3.attention.out" → "layers.3.attention.to_out.0"; prefix
// "model.diffusion_model." or "diffusion_model." stripped). The fused "attention.qkv" stays as is:
// it has no single diffusers counterpart. Diffusers names pass through unchanged.
std::string diffusers_name(const std::string& name);

// Every tensor of the checkpoint in diffusers names: prefix stripped, ComfyUI names mapped, fused
// qkv split into to_q/to_k/to_v, the parameter-free final norm's stray "norm_final.weight" dropped.
// E4M3 weights stay codes with their row scales (io/checkpoint.h), split alike.
std::map<std::string, StoredTensor> diffusers_tensors(const Checkpoint& ck);

// The model of a diffusers transformer folder or a single file. Config: `config` if given, else the
// folder's config.json, else inferred from the tensor shapes. Strict: any missing, unexpected or
// wrong-shape tensor is one dt::Error listing them.
ZImageTransformer load_transformer(const std::string& path, const LoadOptions& options,
                                   const std::optional<ZImageConfig>& config = std::nullopt);

// Writes a diffusers folder (config.json + diffusion_pytorch_model.safetensors) with random weights
// drawn from `seed` in sorted-name order: matrices N(0, 1/fan_in), biases 0.1·N(0, 1), norm weights
// 1 + 0.1·N(0, 1), pad tokens N(0, 1) (the recipe of shared/golden). Same seed ⇒ same bytes.
void write_random_checkpoint(const std::string& dir, const ZImageConfig& config, uint64_t seed,
                             c10::ScalarType dtype = c10::kFloat);

}  // namespace zimage
}  // namespace dt
