// Tiny autoencoders with random weights, written as real diffusers folders (config.json +
// diffusion_pytorch_model.safetensors, real key names): the test worlds of `make-tiny` and the
// unit tests. Initialised like the goldens (shared/golden/README.md, "How the weights were made")
// so activations stay O(1) through the network.
#pragma once
#include <cstdint>
#include <string>

#include <c10/core/ScalarType.h>

#include "vae/config.h"

namespace dt::vae {

// The goldens' tiny shape: three levels (16, 32, 32), 8 groups, two resnets per encoder block,
// 16 latent channels for AutoencoderKL and 32 for AutoencoderKLFlux2.
VaeConfig tiny_vae_config(VaeKind kind);

// Writes `dir`/config.json and `dir`/diffusion_pytorch_model.safetensors (each atomically).
// Same config and seed ⇒ the same bytes.
void write_random_vae(const std::string& dir, const VaeConfig& config, uint64_t seed,
                      at::ScalarType dtype = at::kFloat);

}  // namespace dt::vae
