#include "models/flux2/family.h"

#include <cmath>
#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "models/flux2/conditioning.h"
#include "models/flux2/tiny.h"
#include "models/flux2/weights.h"
#include "text/qwen3_text_encoder.h"

namespace dt {
namespace flux2 {
namespace {

namespace fs = std::filesystem;

int64_t image_tokens(int64_t height, int64_t width) {
  return (height / (kVaeFactor * kPatch)) * (width / (kVaeFactor * kPatch));
}

}  // namespace

Flux2Denoiser::Flux2Denoiser(Flux2Transformer model, std::vector<std::string> files)
    : model_(std::move(model)), files_(std::move(files)) {}

at::Tensor Flux2Denoiser::velocity(const at::Tensor& x, const at::Tensor& sigma, const std::vector<TextFeatures>& text) {
  if (x.dim() != 4 || static_cast<int64_t>(text.size()) != x.size(0))
    throw Error("FLUX.2 denoiser needs latents [B, C, h, w] and B text features (got " + c10::str(x.sizes()) + ", " +
                std::to_string(text.size()) + ")");
  for (const auto& t : text)
    if (t.dim() != 2 || t.sizes() != text[0].sizes())
      throw Error("FLUX.2 text features must all be [L, " + std::to_string(model_->config().joint_attention_dim) +
                  "] of one length L, got " + c10::str(t.sizes()) + " beside " + c10::str(text[0].sizes()));
  const int64_t h = x.size(2), w = x.size(3);
  at::Tensor out = model_->forward(pack_tokens(x), torch::stack(text), sigma.to(at::kFloat), image_ids(h, w),
                                   text_ids(text[0].size(0)));
  return unpack_tokens(out.to(at::kFloat), h, w);  // the model predicts v = ε − x0 itself
}

std::string Flux2Denoiser::identity() const {
  if (identity_.empty()) identity_ = content_identity("flux2", "transformer", files_);  // once: it reads every byte
  return identity_;
}

double empirical_mu(int64_t image_tokens, int steps) {
  constexpr double a1 = 8.73809524e-05, b1 = 1.89833333, a2 = 0.00016927, b2 = 0.45666666;
  const double n = static_cast<double>(image_tokens);
  if (image_tokens > 4300) return a2 * n + b2;
  const double m_200 = a2 * n + b2, m_10 = a1 * n + b1;  // fitted at 200 and 10 steps
  const double a = (m_200 - m_10) / 190.0, b = m_200 - 200.0 * a;
  return a * steps + b;
}

std::vector<double> sigma_schedule(int steps, int64_t image_tokens) {
  if (steps < 1) throw Error("the number of sampling steps must be at least 1");
  const double shift = std::exp(empirical_mu(image_tokens, steps));
  std::vector<double> sigmas;
  for (int i = 0; i < steps; ++i) {
    const double s = steps == 1 ? 1.0 : 1.0 + (1.0 / steps - 1.0) * i / (steps - 1);  // linspace(1, 1/N, N)
    sigmas.push_back(shift / (shift + (1.0 / s - 1.0)));
  }
  sigmas.push_back(0.0);
  return sigmas;
}

namespace {

class Flux2Family : public Family {
 public:
  std::string name() const override { return "flux2-klein"; }
  bool detect(const Checkpoint& transformer) const override { return is_flux2_checkpoint(transformer); }

  std::unique_ptr<Denoiser> load_transformer(const std::string& path, const LoadOptions& o) const override {
    const std::string where = pipeline_component(path, "transformer");
    Flux2Transformer model = flux2::load_transformer(where, o);
    // deltatrain trains adapters only: the base weights never need gradients.
    for (auto& p : model->parameters()) p.requires_grad_(false);
    return std::make_unique<Flux2Denoiser>(std::move(model), checkpoint_files(where));
  }
  std::string transformer_identity(const std::string& path) const override {
    return content_identity("flux2", "transformer", checkpoint_files(pipeline_component(path, "transformer")));
  }

  // Qwen3 through the chat template without thinking, 512 positions, hidden states 9, 18, 27
  // stacked per token, every position kept (specs/flux2.md §5).
  std::unique_ptr<TextEncoder> load_text_encoder(const std::string& path, const LoadOptions& o) const override {
    return std::make_unique<Qwen3TextEncoder>(path, o, Qwen3Prompting{chat_template(), 512, {9, 18, 27}, false});
  }
  ChatTemplate chat_template() const override { return ChatTemplate::qwen3_no_thinking; }
  std::unique_ptr<Autoencoder> load_vae(const std::string& path, const LoadOptions& o) const override {
    return Flux2Autoencoder::load(path, o);
  }

  int pixel_multiple() const override { return kVaeFactor * kPatch; }
  std::vector<int64_t> latent_shape(int64_t height, int64_t width) const override {
    return {kLatentChannels, height / (kVaeFactor * kPatch), width / (kVaeFactor * kPatch)};
  }
  std::vector<double> sigmas(int steps, int64_t height, int64_t width) const override {
    return sigma_schedule(steps, image_tokens(height, width));
  }

  // OneTrainer's dynamic_timestep_shifting for FLUX.2 (specs/flux2.md §9): the FLUX.1 rule,
  // mu = L·0.65/3840 + (0.5 − 256·0.65/3840) for L image tokens, s = e^mu.
  double dynamic_shift(int64_t height, int64_t width) const override {
    const double tokens = static_cast<double>(image_tokens(height, width));
    return std::exp(tokens * (0.65 / 3840.0) + (0.5 - 256.0 * 0.65 / 3840.0));
  }

  // Over diffusers module paths. "blocks" (OneTrainer's FLUX.2 default) = every Linear of the
  // double- and single-stream blocks, which are all attention or MLP layers (hence attn-mlp too);
  // "attn-only" leaves out the double blocks' MLPs (the single blocks fuse attention and MLP).
  std::map<std::string, std::string> lora_presets() const override {
    return {{"full", ".*"},
            {"blocks", "transformer_block"},
            {"attn-mlp", "transformer_block"},
            {"attn-only", R"(^(single_)?transformer_blocks\.\d+\.attn\.)"}};
  }

  const lora::KeyMap& lora_keys() const override { return flux2::lora_keys(); }

  FamilyDefaults defaults() const override {
    FamilyDefaults d;
    d.transfer_cfg = 2.5;          // about the CFG the distilled klein models were distilled at
    d.sample_steps_base = 50;      // klein Base: 50 steps with CFG 4.0 (diffusers pipeline)
    d.sample_cfg_base = 4.0;       // the family's guidance is the standard CFG weight (offset 0)
    d.sample_steps_distilled = 4;  // distilled klein: 4 steps, no CFG
    d.lora_preset = "blocks";      // OneTrainer's FLUX.2 default
    d.distilled_name = "distilled";
    return d;
  }

  std::string onetrainer_model_type() const override { return "FLUX_2"; }
  std::string describe(const Checkpoint& checkpoint) const override { return describe_checkpoint(checkpoint); }
  void write_tiny_pipeline(const std::string& dir, uint64_t seed, bool distilled,
                           const std::string& transformer_config) const override {
    flux2::write_tiny_pipeline(dir, seed, distilled, transformer_config);
  }
  std::string forward_component() const override { return "flux2-transformer"; }
  void forward(const ForwardArgs& args) const override { flux2::forward(args); }
  // The klein pipeline's pipe.image_latents and pipe.image_tokens (shared/golden/flux2_vae).
  NamedTensors vae_pipeline_outputs(vae::AutoencoderKLImpl& vae, const at::Tensor& mean) const override {
    if (vae.config().kind != VaeKind::kFlux2) return {};
    const at::Tensor latents = flux2_normalize(vae, patchify_2x2(mean)).to(at::kCPU, at::kFloat).contiguous();
    return {{"pipe.image_latents", latents}, {"pipe.image_tokens", pack_tokens(latents).contiguous()}};
  }
};

}  // namespace
}  // namespace flux2

const Family& flux2_family() {
  static const flux2::Flux2Family family;
  return family;
}

}  // namespace dt
