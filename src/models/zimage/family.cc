#include "models/zimage/family.h"

#include <cmath>
#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "models/zimage/conditioning.h"
#include "models/zimage/tiny.h"
#include "models/zimage/weights.h"
#include "nn/linear.h"

namespace dt {
namespace zimage {
namespace {

constexpr double kSchedulerShift = 3.0;  // FlowMatchEulerDiscreteScheduler shift of both models
constexpr int kVaeFactor = 8;
constexpr int kPatch = 2;

}  // namespace

ZImageDenoiser::ZImageDenoiser(ZImageTransformer model, std::vector<std::string> files)
    : model_(std::move(model)), files_(std::move(files)) {}

at::Tensor ZImageDenoiser::velocity(const at::Tensor& x, const at::Tensor& sigma, const std::vector<TextFeatures>& text) {
  // x: [B, C, h, w] → B latents [C, 1, h, w]; the model is fed the exact τ = 1 − σ.
  std::vector<at::Tensor> latents;
  for (int64_t i = 0; i < x.size(0); ++i) latents.push_back(x[i].unsqueeze(1));
  at::Tensor tau = 1.0 - sigma.to(at::kFloat);
  std::vector<at::Tensor> out = model_->forward(latents, tau, text);
  return -torch::stack(out).squeeze(2).to(at::kFloat);  // v = ε − x0 = −(x0 − ε)
}

std::string ZImageDenoiser::identity() const {
  if (identity_.empty()) identity_ = content_identity("zimage", "transformer", files_);  // once: it reads every byte
  return identity_;
}

std::vector<double> sigma_schedule(int steps) {
  if (steps < 1) throw Error("the number of sampling steps must be at least 1");
  std::vector<double> sigmas;
  for (int i = 0; i < steps; ++i) {
    const double s = steps == 1 ? 1.0 : 1.0 + (1.0 / steps - 1.0) * i / (steps - 1);  // linspace(1, 1/N, N)
    sigmas.push_back(kSchedulerShift * s / (1.0 + (kSchedulerShift - 1.0) * s));
  }
  sigmas.push_back(0.0);
  return sigmas;
}

namespace {

class ZImageFamily : public Family {
 public:
  std::string name() const override { return "zimage"; }
  bool detect(const Checkpoint& transformer) const override { return is_zimage_checkpoint(transformer); }

  std::unique_ptr<Denoiser> load_transformer(const std::string& path, const LoadOptions& o) const override {
    const std::string where = pipeline_component(path, "transformer");
    ZImageTransformer model = zimage::load_transformer(where, o);
    // deltatrain trains adapters only: the base weights never need gradients.
    for (auto& p : model->parameters()) p.requires_grad_(false);
    return std::make_unique<ZImageDenoiser>(std::move(model), checkpoint_files(where));
  }
  std::string transformer_identity(const std::string& path) const override {
    return content_identity("zimage", "transformer", checkpoint_files(pipeline_component(path, "transformer")));
  }

  std::unique_ptr<TextEncoder> load_text_encoder(const std::string& path, const LoadOptions& o) const override {
    return std::make_unique<Qwen3TextEncoder>(path, o, text_prompting());
  }
  std::unique_ptr<Autoencoder> load_vae(const std::string& path, const LoadOptions& o) const override {
    return ZImageAutoencoder::load(path, o);
  }

  int pixel_multiple() const override { return kVaeFactor * kPatch; }
  std::vector<int64_t> latent_shape(int64_t height, int64_t width) const override {
    return {16, height / kVaeFactor, width / kVaeFactor};
  }
  std::vector<double> sigmas(int steps, int64_t, int64_t) const override { return sigma_schedule(steps); }

  // training.md §4: mu linear in the token count between (256, 0.5) and (4096, 1.15), s = e^mu.
  double dynamic_shift(int64_t height, int64_t width) const override {
    const double tokens = static_cast<double>(height / (kVaeFactor * kPatch)) * static_cast<double>(width / (kVaeFactor * kPatch));
    const double m = (1.15 - 0.5) / (4096.0 - 256.0), b = 0.5 - 256.0 * m;
    return std::exp(tokens * m + b);
  }

  // OneTrainer's Z-Image presets over diffusers module paths (searched anywhere in the path).
  // "blocks" = the 30 main layers; attn-mlp / attn-only leave the refiners alone.
  std::map<std::string, std::string> lora_presets() const override {
    return {{"full", ".*"},
            {"blocks", R"(^layers\.)"},
            {"attn-mlp", R"(^layers\.\d+\.(attention|feed_forward)\.)"},
            {"attn-only", R"(^layers\.\d+\.attention\.)"}};
  }

  const lora::KeyMap& lora_keys() const override { return zimage::lora_keys(); }
  ChatTemplate chat_template() const override { return text_prompting().chat_template; }

  FamilyDefaults defaults() const override {
    FamilyDefaults d;
    d.transfer_cfg = 3.0;      // the CFG scale Z-Image-Turbo was distilled at
    d.sample_steps_base = 50;  // official model-zoo setting for Base
    // Z-Image's own convention o = o_pos + g·(o_pos − o_neg) is standard CFG 1 + g. g = 4.0 is the
    // value cited as the official Base default; the diffusers pipeline default 5.0 tends to
    // oversaturate the small sample previews a training run writes.
    d.guidance_offset = 1.0;
    d.sample_cfg_base = 4.0 + d.guidance_offset;
    d.sample_steps_distilled = 8;  // Turbo, no CFG (σ' = 1, 0.955, …, 0.3 → 0)
    d.lora_preset = "attn-mlp";
    d.distilled_name = "turbo";
    return d;
  }

  std::string onetrainer_model_type() const override { return "Z_IMAGE"; }
  std::string describe(const Checkpoint& checkpoint) const override { return describe_checkpoint(checkpoint); }
  void write_tiny_pipeline(const std::string& dir, uint64_t seed, bool distilled,
                           const std::string& transformer_config) const override {
    zimage::write_tiny_pipeline(dir, seed, distilled, transformer_config);
  }
  std::string forward_component() const override { return "zimage-transformer"; }
  void forward(const ForwardArgs& args) const override { zimage::forward(args); }
};

}  // namespace
}  // namespace zimage

const Family& zimage_family() {
  static const zimage::ZImageFamily family;
  return family;
}

}  // namespace dt
