// The family interface: everything the layers above know about a model family. Everything
// model-specific lives in src/models/<family>/ behind it, and a family is added with one line in
// models/registry.cc (docs/architecture.md, "Adding a model family").
//
// Conventions (DESIGN §1, specs/training.md §0): x0 is the clean latent in the family's
// *normalized training layout* (Z-Image: [16, H/8, W/8]; FLUX.2: patchified [128, H/16, W/16]),
// ε ~ N(0, I) of the same shape, σ ∈ [0, 1], x_σ = (1 − σ)·x0 + σ·ε, and every prediction is the
// canonical velocity v ≈ ε − x0. Each family converts its model's own time input and output sign.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/model_api.h"
#include "io/safetensors.h"
#include "models/forward_args.h"
#include "nn/weights_8bit.h"
#include "text/prompt.h"

namespace torch::nn {
class Module;
}

namespace dt {

class Checkpoint;
namespace nn {
struct LoraState;
}
namespace lora {
struct KeyMap;
}
namespace vae {
class AutoencoderKLImpl;
}

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
  // model.offload_blocks: the frozen weights of the last `n` transformer blocks stay in host memory
  // and come to `device` only while their block runs; everything else moves to `device`. For a
  // model loaded on the CPU, once its LoRA adapters are attached or merged (nn/offload.h).
  virtual void offload_blocks(int n, c10::Device device) = 0;
  // model.weight_dtype: the frozen Linear weights of every transformer block stored in 8 bits
  // (nn/weights_8bit.h); embedders, the modulation outside the blocks and the final layer keep the
  // model's dtype. After any LoRA merge, before offload_blocks.
  virtual void store_blocks_8bit(WeightFormat format) = 0;
  // Shared switch of every LoRA adapter in this model (LoRA off = the prior prediction).
  virtual nn::LoraState& lora_state() = 0;
  // Identity of the loaded weights (content hash of the checkpoint files), for manifests.
  virtual std::string identity() const = 0;
};

struct FamilyDefaults {
  // The standard CFG weight w (v = v_neg + w·(v_pos − v_neg)) the distilled model was distilled
  // at: the transfer target's g for a distilled student.
  double transfer_cfg = 1;
  int sample_steps_base = 0;     // Base: many steps with CFG
  double sample_cfg_base = 1;    // standard CFG weight of Base samples
  int sample_steps_distilled = 0;  // distilled: few steps, no CFG
  // The family's own guidance convention (sample.guidance) as a standard CFG weight:
  // w = guidance + guidance_offset (Z-Image: o_pos + g·(o_pos − o_neg), so w = 1 + g).
  double guidance_offset = 0;
  std::string lora_preset;     // the family's default LoRA layer preset (OneTrainer's)
  std::string distilled_name;  // what the family calls its distilled sibling: "turbo", "distilled"
};

// Which of a family's pair a model is: Base (many steps, CFG) or distilled (few steps, none).
enum class Variant { base, distilled };

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
  // Its LoRA-able Linear layers and native key names (models/<family>/lora_keys.cc).
  virtual const lora::KeyMap& lora_keys() const = 0;
  // The chat template its text encoder puts prompts in.
  virtual ChatTemplate chat_template() const = 0;
  virtual FamilyDefaults defaults() const = 0;

  // Base or distilled, as the model's own files say (model_index.json's is_distilled); nothing
  // when they do not say (Base and distilled share one architecture and key set).
  virtual std::optional<Variant> variant(const std::string& path) const;
  // OneTrainer's model_type of this family (matched as a prefix: "FLUX_2" covers FLUX_2_*).
  virtual std::string onetrainer_model_type() const = 0;
  // What `inspect` says about a checkpoint of this family ("" when it is not one).
  virtual std::string describe(const Checkpoint& checkpoint) const = 0;

  // A complete tiny pipeline folder of the real layout (model_index.json with is_distilled,
  // scheduler/, transformer/, text_encoder/, tokenizer/, vae/) with random weights: text encoder,
  // tokenizer and VAE depend only on `seed`, so a Base and a distilled folder written with one seed
  // share one latent space as the real pairs do. `transformer_config` is a JSON object of
  // config.json fields that replace the tiny transformer's ("{}": the tiny one; a world's Base is a
  // larger draw of the same architecture). Same arguments ⇒ the same bytes.
  virtual void write_tiny_pipeline(const std::string& dir, uint64_t seed, bool distilled,
                                   const std::string& transformer_config) const = 0;

  // `deltatrain forward --component <forward_component()>`: the transformer on golden inputs
  // (shared/golden/README.md), outputs and intermediates under the golden's names.
  virtual std::string forward_component() const = 0;
  virtual void forward(const ForwardArgs& args) const = 0;
  // Extra outputs of `forward --component vae-encode` that the family's pipeline derives from the
  // posterior mean (pipe.* of the golden), when `vae` is its kind of VAE; none by default.
  virtual NamedTensors vae_pipeline_outputs(vae::AutoencoderKLImpl& vae, const at::Tensor& posterior_mean) const {
    return {};
  }
};

// The registry (models/registry.cc).
const std::vector<const Family*>& families();
const Family& family_by_name(const std::string& name);        // throws dt::Error listing the names
const Family& family_or_first(const std::string& name);       // empty: the first registered
const Family& detect_family(const std::string& transformer_path);  // throws dt::Error when none fits

}  // namespace dt
