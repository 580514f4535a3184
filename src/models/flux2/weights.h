// FLUX.2 transformer checkpoints: diffusers folders and single files, and BFL / ComfyUI single files
// (original names, fused qkv, swapped final AdaLN halves; specs/flux2.md §10), all read into
// diffusers names.
#pragma once
#include <map>
#include <optional>
#include <string>

#include <ATen/Tensor.h>

#include "models/family.h"
#include "models/flux2/config.h"
#include "models/flux2/transformer.h"

namespace dt {

class Checkpoint;

namespace flux2 {

// True for a FLUX.2 transformer checkpoint in either naming, with or without the ComfyUI prefix.
bool is_flux2_checkpoint(const Checkpoint& ck);

// The `deltatrain inspect` line of a FLUX.2 transformer checkpoint: naming, size and the variant the
// shapes reveal (inner dim 3072 / 4096 / 6144 ⇒ klein 4B / klein 9B / dev); empty for others.
std::string describe_checkpoint(const Checkpoint& ck);

// Every tensor of the checkpoint in diffusers names: prefix ("model.diffusion_model.",
// "diffusion_model.") stripped, original names mapped, fused qkv split into row thirds,
// final_layer.adaLN_modulation.1 halves swapped to [scale ; shift]. E4M3 weights stay codes with
// their row scales (io/checkpoint.h), split and swapped alike.
std::map<std::string, StoredTensor> diffusers_tensors(const Checkpoint& ck);

// The model of a diffusers transformer folder or a single file. Config: `config` if given, else the
// folder's config.json, else inferred from the tensor shapes. Strict: any missing, unexpected or
// wrong-shape tensor is one dt::Error listing them.
Flux2Transformer load_transformer(const std::string& path, const LoadOptions& options,
                                  const std::optional<Flux2Config>& config = std::nullopt);

// The golden recipe's random weights (shared/golden/README.md): matrices N(0, 1/fan_in) in sorted
// name order from one generator seeded by `seed`, RMSNorm weights 1 + 0.1·N(0, 1), the timestep
// MLP ×1.5 so the modulation is O(0.5). Same seed ⇒ same tensors.
NamedTensors random_weights(const Flux2Config& config, uint64_t seed);
// A diffusers folder (config.json + diffusion_pytorch_model.safetensors) of random_weights().
void write_random_checkpoint(const std::string& dir, const Flux2Config& config, uint64_t seed,
                             c10::ScalarType dtype = c10::kFloat);

// A BFL / ComfyUI single file of the same weights (original names, fused qkv, swapped halves),
// under `prefix` (e.g. "model.diffusion_model."): how released single files are laid out.
void write_original_file(const std::string& path, const std::map<std::string, at::Tensor>& diffusers,
                         const std::string& prefix = "");

}  // namespace flux2
}  // namespace dt
