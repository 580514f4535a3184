// FLUX.2 [klein]'s autoencoder behind the family interface, and its latent handling around the
// VAE (specs/flux2.md §6; the klein pipeline's `_encode_vae_image`, `_pack_latents` and their
// inverses): the 32-channel posterior mean is patchified 2×2 to 128 channels, normalised per
// channel by the VAE's BatchNorm running statistics, and packed to tokens for the transformer.
// (Its text prompting is a Qwen3Prompting in family.cc.)
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "core/model_api.h"
#include "vae/autoencoder.h"

namespace dt::flux2 {

constexpr int kVaeFactor = 8;
constexpr int kPatch = 2;  // 2×2 latent patches: 16 px per token
constexpr int64_t kLatentChannels = 128;

// [B, C, H, W] → [B, 4·C, H/2, W/2]; output channel c·4 + 2·dy + dx.
at::Tensor patchify_2x2(const at::Tensor& z);
// The inverse: [B, 4·C, h, w] → [B, C, 2·h, 2·w].
at::Tensor unpatchify_2x2(const at::Tensor& x);

// [B, C, h, w] → [B, h·w, C], tokens in raster order (row-major).
at::Tensor pack_tokens(const at::Tensor& x);
// The inverse: [B, h·w, C] → [B, C, h, w].
at::Tensor unpack_tokens(const at::Tensor& tokens, int64_t h, int64_t w);

// images [B, 3, H, W] in [-1, 1] → the normalised patchified latent x0 [B, 128, H/16, W/16],
// float32 (pipe.image_latents).
at::Tensor flux2_encode_latents(vae::AutoencoderKLImpl& vae, const at::Tensor& images);
// x0 [B, 128, h, w] → images [B, 3, 16·h, 16·w] in the VAE's dtype, not clamped (pipe.decoded).
at::Tensor flux2_decode_latents(vae::AutoencoderKLImpl& vae, const at::Tensor& latents);

// (x − mean) / std and its inverse, per channel of a [B, 4·C, h, w] tensor, in float32.
at::Tensor flux2_normalize(vae::AutoencoderKLImpl& vae, const at::Tensor& patchified);
at::Tensor flux2_denormalize(vae::AutoencoderKLImpl& vae, const at::Tensor& latents);

// AutoencoderKLFlux2 with the family's latent handling: posterior mean → 2×2 patchify →
// BatchNorm-statistics normalization, and back.
class Flux2Autoencoder : public Autoencoder {
 public:
  // `path`: a pipeline folder holding vae/, a diffusers VAE folder or a single file.
  static std::unique_ptr<Flux2Autoencoder> load(const std::string& path, const LoadOptions& options);
  at::Tensor encode(const at::Tensor& images) override;
  at::Tensor decode(const at::Tensor& latents) override;
  std::string identity() const override;

 private:
  Flux2Autoencoder(vae::AutoencoderKL vae, std::vector<std::string> files);
  vae::AutoencoderKL vae_;
  std::vector<std::string> files_;
  mutable std::string identity_;
};

}  // namespace dt::flux2
