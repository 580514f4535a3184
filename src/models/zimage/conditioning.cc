#include "models/zimage/conditioning.h"

#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "models/zimage/weights.h"
#include "vae/load.h"

namespace dt::zimage {
namespace {

namespace fs = std::filesystem;

fs::path subfolder(const std::string& pipeline, const char* name) {
  const fs::path dir = fs::path(pipeline) / name;
  if (!fs::is_directory(dir)) throw file_error(pipeline, std::string("not a Z-Image pipeline folder: no ") + name + "/ inside");
  return dir;
}

}  // namespace

ZImageTextEncoder::ZImageTextEncoder(Tokenizer tokenizer, std::shared_ptr<Qwen3Encoder> encoder, std::vector<std::string> files)
    : tokenizer_(std::move(tokenizer)), encoder_(std::move(encoder)), files_(std::move(files)) {}

std::unique_ptr<ZImageTextEncoder> ZImageTextEncoder::load(const std::string& path, const LoadOptions& options) {
  const fs::path tokenizer_dir = subfolder(path, "tokenizer"), encoder_dir = subfolder(path, "text_encoder");
  Tokenizer tokenizer = Tokenizer::load(tokenizer_dir.string());
  auto encoder = Qwen3Encoder::load(encoder_dir.string(), options);
  for (auto& p : encoder->parameters()) p.requires_grad_(false);
  std::vector<std::string> files = {(tokenizer_dir / "tokenizer.json").string()};
  for (const auto& f : checkpoint_files(encoder_dir.string())) files.push_back(f);
  return std::unique_ptr<ZImageTextEncoder>(new ZImageTextEncoder(std::move(tokenizer), std::move(encoder), std::move(files)));
}

std::vector<TextFeatures> ZImageTextEncoder::encode(const std::vector<std::string>& prompts) {
  torch::NoGradGuard no_grad;
  EncodedPrompts tokens = encode_prompts(tokenizer_, prompts, ChatTemplate::zimage, kMaxLength);
  const int64_t second_to_last = encoder_->config.num_hidden_layers - 1;  // hidden_states[-2]
  at::Tensor hidden = encoder_->hidden_states(tokens.input_ids, tokens.attention_mask, {second_to_last})[0];
  std::vector<TextFeatures> out;
  for (int64_t i = 0; i < hidden.size(0); ++i) {
    at::Tensor valid = tokens.attention_mask[i].to(at::kBool).to(hidden.device());
    out.push_back(hidden[i].index({valid}));  // [L_i, hidden]
  }
  return out;
}

std::string ZImageTextEncoder::identity() const {
  if (identity_.empty())
    identity_ = content_identity("zimage", "text: qwen3 chat template (thinking), 512 tokens, hidden_states[-2], valid tokens", files_);
  return identity_;
}

ZImageAutoencoder::ZImageAutoencoder(vae::AutoencoderKL vae, std::vector<std::string> files)
    : vae_(std::move(vae)), files_(std::move(files)) {}

std::unique_ptr<ZImageAutoencoder> ZImageAutoencoder::load(const std::string& path, const LoadOptions& options) {
  const std::string where = fs::is_directory(fs::path(path) / "vae") ? (fs::path(path) / "vae").string() : path;
  vae::AutoencoderKL vae = vae::load_autoencoder(where, options);
  const VaeConfig& c = vae->config();
  if (c.kind != VaeKind::kAutoencoderKL || c.latent_channels != 16)
    throw file_error(where, "Z-Image needs the 16-channel FLUX.1 AutoencoderKL, not " + std::string(c.class_name()) + " with " +
                                std::to_string(c.latent_channels) + " latent channels");
  // The config values, when present, must be the ones this family normalizes with.
  if ((c.scaling_factor && std::abs(*c.scaling_factor - kScale) > 1e-9) || (c.shift_factor && std::abs(*c.shift_factor - kShift) > 1e-9))
    throw file_error(where, "VAE scaling/shift factors differ from Z-Image's 0.3611 / 0.1159");
  for (auto& p : vae->parameters()) p.requires_grad_(false);
  return std::unique_ptr<ZImageAutoencoder>(new ZImageAutoencoder(std::move(vae), checkpoint_files(where)));
}

at::Tensor ZImageAutoencoder::encode(const at::Tensor& images) {
  torch::NoGradGuard no_grad;
  at::Tensor mean = vae_->encode(images.to(vae_->device(), vae_->dtype())).mean;
  return ((mean.to(at::kFloat) - kShift) * kScale);
}

at::Tensor ZImageAutoencoder::decode(const at::Tensor& latents) {
  torch::NoGradGuard no_grad;
  at::Tensor z = latents.to(at::kFloat) / kScale + kShift;
  return vae_->decode(z.to(vae_->device(), vae_->dtype())).to(at::kFloat);
}

std::string ZImageAutoencoder::identity() const {
  if (identity_.empty()) identity_ = content_identity("zimage", "vae: posterior mean, (z - 0.1159) * 0.3611", files_);
  return identity_;
}

}  // namespace dt::zimage
