// What every model component shares below the model families: how weights are loaded, and the
// two conditioning interfaces a family implements with its text encoder and its VAE. The
// denoiser and the family registry sit above, in models/family.h.
#pragma once
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "core/dtype.h"

namespace dt {

struct LoadOptions {
  c10::Device device = c10::kCPU;
  c10::ScalarType compute_dtype = c10::kFloat;  // weights are converted to this on load
  // model.weight_dtype: the frozen Linear weights of the transformer's blocks stored in 8 bits as
  // they are read, so no full-precision copy of them is ever held; with fp8, an E4M3 checkpoint's
  // codes and scales are kept as they are. Loads on the CPU.
  WeightFormat block_weights = WeightFormat::dense;
};

// Text conditioning of one sample in the form the family's transformer consumes
// (Z-Image: [L_i, cap_feat_dim], valid tokens only; FLUX.2 klein: [512, 3·hidden]).
using TextFeatures = at::Tensor;

class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  // Prompts through the family's chat template, tokenizer and encoder.
  virtual std::vector<TextFeatures> encode(const std::vector<std::string>& prompts) = 0;
  virtual std::string identity() const = 0;  // tokenizer + encoder + template, for cache keys
};

class Autoencoder {
 public:
  virtual ~Autoencoder() = default;
  // images: [B, 3, H, W] in [-1, 1] → normalized x0 (posterior mean, family normalization).
  virtual at::Tensor encode(const at::Tensor& images) = 0;
  // normalized x0 → images [B, 3, H, W] in [-1, 1] (not clamped).
  virtual at::Tensor decode(const at::Tensor& latents) = 0;
  virtual std::string identity() const = 0;  // VAE weights + normalization: the latent space
};

}  // namespace dt
