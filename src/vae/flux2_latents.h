// FLUX.2's latent handling around its VAE (specs/flux2.md §6; the klein pipeline's
// `_encode_vae_image`, `_pack_latents` and their inverses): the 32-channel posterior mean is
// patchified 2×2 to 128 channels, normalised per channel by the VAE's BatchNorm running
// statistics, and packed to tokens for the transformer.
#pragma once
#include <ATen/Tensor.h>

#include "vae/autoencoder.h"

namespace dt::vae {

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
at::Tensor flux2_encode_latents(AutoencoderKLImpl& vae, const at::Tensor& images);
// x0 [B, 128, h, w] → images [B, 3, 16·h, 16·w] in the VAE's dtype, not clamped (pipe.decoded).
at::Tensor flux2_decode_latents(AutoencoderKLImpl& vae, const at::Tensor& latents);

// (x − mean) / std and its inverse, per channel of a [B, 4·C, h, w] tensor, in float32.
at::Tensor flux2_normalize(AutoencoderKLImpl& vae, const at::Tensor& patchified);
at::Tensor flux2_denormalize(AutoencoderKLImpl& vae, const at::Tensor& latents);

}  // namespace dt::vae
