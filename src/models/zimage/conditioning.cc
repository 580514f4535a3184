#include "models/zimage/conditioning.h"

#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "models/zimage/weights.h"
#include "vae/load.h"

namespace dt::zimage {
namespace fs = std::filesystem;

const Qwen3Prompting& text_prompting() {
  static const Qwen3Prompting prompting{ChatTemplate::qwen3, 512, {-2}, /*valid_tokens_only=*/true};
  return prompting;
}

ZImageAutoencoder::ZImageAutoencoder(vae::AutoencoderKL vae, std::vector<std::string> files)
    : vae_(std::move(vae)), files_(std::move(files)) {}

std::unique_ptr<ZImageAutoencoder> ZImageAutoencoder::load(const std::string& path, const LoadOptions& options) {
  const std::string where = pipeline_component(path, "vae");
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
