#include "models/flux2/conditioning.h"

#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "vae/load.h"

namespace dt::flux2 {
namespace {

void require(bool ok, const std::string& what, const at::Tensor& x) {
  if (!ok) throw Error(what + ", got " + (x.defined() ? c10::str(x.sizes()) : std::string("undefined")));
}

at::Tensor channel_view(const at::Tensor& stats) { return stats.view({1, -1, 1, 1}); }

}  // namespace

at::Tensor patchify_2x2(const at::Tensor& z) {
  require(z.defined() && z.dim() == 4 && z.size(2) % 2 == 0 && z.size(3) % 2 == 0, "patchify: expected [B, C, H, W] with even H, W", z);
  const int64_t b = z.size(0), c = z.size(1), h = z.size(2) / 2, w = z.size(3) / 2;
  return z.reshape({b, c, h, 2, w, 2}).permute({0, 1, 3, 5, 2, 4}).reshape({b, c * 4, h, w});
}

at::Tensor unpatchify_2x2(const at::Tensor& x) {
  require(x.defined() && x.dim() == 4 && x.size(1) % 4 == 0, "unpatchify: expected [B, 4·C, h, w]", x);
  const int64_t b = x.size(0), c = x.size(1) / 4, h = x.size(2), w = x.size(3);
  return x.reshape({b, c, 2, 2, h, w}).permute({0, 1, 4, 2, 5, 3}).reshape({b, c, h * 2, w * 2});
}

at::Tensor pack_tokens(const at::Tensor& x) {
  require(x.defined() && x.dim() == 4, "pack: expected [B, C, h, w]", x);
  return x.flatten(2).transpose(1, 2).contiguous();
}

at::Tensor unpack_tokens(const at::Tensor& tokens, int64_t h, int64_t w) {
  require(tokens.defined() && tokens.dim() == 3 && tokens.size(1) == h * w,
          "unpack: expected [B, " + std::to_string(h * w) + ", C] tokens", tokens);
  return tokens.transpose(1, 2).reshape({tokens.size(0), tokens.size(2), h, w});
}

at::Tensor flux2_normalize(vae::AutoencoderKLImpl& vae, const at::Tensor& patchified) {
  const at::Tensor mean = vae.bn_mean(), std = vae.bn_std();
  require(patchified.dim() == 4 && patchified.size(1) == mean.size(0),
          "FLUX.2 latents: expected [B, " + std::to_string(mean.size(0)) + ", h, w]", patchified);
  return (patchified.to(mean.device(), at::kFloat) - channel_view(mean)) / channel_view(std);
}

at::Tensor flux2_denormalize(vae::AutoencoderKLImpl& vae, const at::Tensor& latents) {
  const at::Tensor mean = vae.bn_mean(), std = vae.bn_std();
  require(latents.dim() == 4 && latents.size(1) == mean.size(0),
          "FLUX.2 latents: expected [B, " + std::to_string(mean.size(0)) + ", h, w]", latents);
  return latents.to(mean.device(), at::kFloat) * channel_view(std) + channel_view(mean);
}

at::Tensor flux2_encode_latents(vae::AutoencoderKLImpl& vae, const at::Tensor& images) {
  return flux2_normalize(vae, patchify_2x2(vae.encode(images).mean));
}

at::Tensor flux2_decode_latents(vae::AutoencoderKLImpl& vae, const at::Tensor& latents) {
  return vae.decode(unpatchify_2x2(flux2_denormalize(vae, latents)));
}

Flux2Autoencoder::Flux2Autoencoder(vae::AutoencoderKL vae, std::vector<std::string> files)
    : vae_(std::move(vae)), files_(std::move(files)) {}

std::unique_ptr<Flux2Autoencoder> Flux2Autoencoder::load(const std::string& path, const LoadOptions& options) {
  const std::string where = pipeline_component(path, "vae");
  vae::AutoencoderKL vae = vae::load_autoencoder(where, options);
  const VaeConfig& c = vae->config();
  if (c.kind != VaeKind::kFlux2 || 4 * c.latent_channels != kLatentChannels)
    throw file_error(where, "FLUX.2 needs the 32-channel AutoencoderKLFlux2, not " + std::string(c.class_name()) + " with " +
                                std::to_string(c.latent_channels) + " latent channels");
  if (c.spatial_factor() != kVaeFactor)  // latent_shape() and the 16 px tokens assume it
    throw file_error(where, "FLUX.2 needs a VAE with spatial factor 8, this one has " + std::to_string(c.spatial_factor()));
  for (auto& p : vae->parameters()) p.requires_grad_(false);
  return std::unique_ptr<Flux2Autoencoder>(new Flux2Autoencoder(std::move(vae), checkpoint_files(where)));
}

at::Tensor Flux2Autoencoder::encode(const at::Tensor& images) {
  torch::NoGradGuard no_grad;
  return flux2_encode_latents(*vae_, images.to(vae_->device(), vae_->dtype())).to(at::kFloat);
}

at::Tensor Flux2Autoencoder::decode(const at::Tensor& latents) {
  torch::NoGradGuard no_grad;
  return flux2_decode_latents(*vae_, latents).to(at::kFloat);
}

std::string Flux2Autoencoder::identity() const {
  if (identity_.empty()) identity_ = content_identity("flux2", "vae: posterior mean, 2x2 patchify, batch-norm statistics", files_);
  return identity_;
}

}  // namespace dt::flux2
