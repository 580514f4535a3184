// The family interface: everything the trainer, the transfer steps and the sampler know about a
// model family. Everything model-specific lives in src/models/<family>/ behind it, and a family is
// added with one line in models/registry.cc.
//
// Conventions (DESIGN §1, specs/training.md §0): x0 is the clean latent in the family's
// *normalized training layout* (Z-Image: [16, H/8, W/8]; FLUX.2: patchified [128, H/16, W/16]),
// ε ~ N(0, I) of the same shape, σ ∈ [0, 1], x_σ = (1 − σ)·x0 + σ·ε, and every prediction is the
// canonical velocity v ≈ ε − x0. Each family converts its model's own time input and output sign.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace torch::nn {
class Module;
}

namespace dt {

class Checkpoint;
namespace nn {
struct LoraState;
}

struct LoadOptions {
  c10::Device device = c10::kCPU;
  c10::ScalarType compute_dtype = c10::kFloat;  // weights are converted to this on load
};

// Text conditioning of one sample in the form the family's transformer consumes
// (Z-Image: [L_i, cap_feat_dim], valid tokens only; FLUX.2 klein: [512, 3·hidden]).
using TextFeatures = at::Tensor;

// The denoiser with its LoRA adapters.
class Denoiser {
 public:
  virtual ~Denoiser() = default;
  // x: [B, C, h, w] noisy latents x_σ in the normalized layout; sigma: [B] in [0, 1];
  // text: B features. Returns v̂ ≈ ε − x0, [B, C, h, w], in float32.
  virtual at::Tensor velocity(const at::Tensor& x, const at::Tensor& sigma,
                              const std::vector<TextFeatures>& text) = 0;
  virtual torch::nn::Module& module() = 0;  // the checkpoint-named module tree
  virtual void set_gradient_checkpointing(bool on) = 0;
  // Shared switch of every LoRA adapter in this model (LoRA off = the prior prediction).
  virtual nn::LoraState& lora_state() = 0;
  // Identity of the loaded weights (content hash of the checkpoint files), for manifests.
  virtual std::string identity() const = 0;
};

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

struct FamilyDefaults {
  double transfer_guidance;      // g of the learn target for a distilled student
  int sample_steps_base;         // Base: many steps with CFG
  double sample_guidance_base;   // in the family's own CFG convention
  // The family's guidance g as a standard CFG weight: w = g + guidance_offset in
  // v = v_neg + w·(v_pos − v_neg); CFG runs iff w > 1 (Z-Image: o_pos + g·(o_pos − o_neg), w = 1 + g).
  double guidance_offset = 0;
  int sample_steps_distilled;    // Turbo / distilled: few steps, no CFG
  double learning_rate;          // typical LoRA learning rate on Base
  double learning_rate_distilled;
};

class Family {
 public:
  virtual ~Family() = default;
  virtual std::string name() const = 0;  // as written in configs: "zimage", "flux2-klein"
  // True when a transformer checkpoint (file or folder) belongs to this family.
  virtual bool detect(const Checkpoint& transformer) const = 0;

  // `path` is a transformer checkpoint (diffusers folder or single file) or a pipeline folder
  // holding transformer/, text_encoder/, tokenizer/, vae/.
  virtual std::unique_ptr<Denoiser> load_transformer(const std::string& path, const LoadOptions& o) const = 0;
  // Denoiser::identity of the transformer at `path` without loading it (it still reads every byte).
  virtual std::string transformer_identity(const std::string& path) const = 0;
  virtual std::unique_ptr<TextEncoder> load_text_encoder(const std::string& path, const LoadOptions& o) const = 0;
  virtual std::unique_ptr<Autoencoder> load_vae(const std::string& path, const LoadOptions& o) const = 0;

  // Image sides must be multiples of this (VAE factor × patch size).
  virtual int pixel_multiple() const = 0;
  // Shape of x0 for an image of H × W pixels: {C, h, w}.
  virtual std::vector<int64_t> latent_shape(int64_t height, int64_t width) const = 0;
  // The sampler's σ schedule for `steps` steps at this resolution, ending with 0 (steps + 1 values).
  virtual std::vector<double> sigmas(int steps, int64_t height, int64_t width) const = 0;
  // Training shift s at this resolution when the config asks for the family's dynamic shift.
  virtual double dynamic_shift(int64_t height, int64_t width) const = 0;
  // LoRA layer presets: name → regex over the diffusers module names.
  virtual std::map<std::string, std::string> lora_presets() const = 0;
  virtual FamilyDefaults defaults() const = 0;
};

// The registry (models/registry.cc).
const std::vector<const Family*>& families();
const Family& family_by_name(const std::string& name);        // throws dt::Error listing the names
const Family& detect_family(const std::string& transformer_path);  // throws dt::Error when none fits

}  // namespace dt
