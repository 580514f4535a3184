// The configuration of the LDM-style autoencoders: diffusers' `AutoencoderKL` (FLUX.1 / Z-Image:
// 16 latent channels, no quant convs) and `AutoencoderKLFlux2` (32 latent channels, quant convs,
// BatchNorm running statistics that normalise the patchified latents). Every size comes from
// config.json or from the tensor shapes, never from the full-size models.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dt {

enum class VaeKind { kAutoencoderKL, kFlux2 };

struct VaeConfig {
  VaeKind kind = VaeKind::kAutoencoderKL;
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 16;
  std::vector<int64_t> block_out_channels;          // encoder, one per level
  std::vector<int64_t> decoder_block_out_channels;  // decoder; equal to the encoder's unless given
  int64_t layers_per_block = 2;                     // encoder; the decoder has one more per level
  int64_t norm_num_groups = 32;
  bool mid_block_add_attention = true;
  bool use_quant_conv = false;
  bool use_post_quant_conv = false;
  // AutoencoderKLFlux2 only: BatchNorm2d over the 2×2-patchified latent (affine off).
  double batch_norm_eps = 1e-4;
  double batch_norm_momentum = 0.1;
  std::vector<int64_t> patch_size = {2, 2};
  // AutoencoderKL only, config values the VAE never applies itself (the family's latent scaling).
  std::optional<double> scaling_factor, shift_factor;

  int64_t levels() const { return static_cast<int64_t>(block_out_channels.size()); }
  int64_t spatial_factor() const { return int64_t{1} << (levels() - 1); }  // pixels per latent side
  int64_t bn_channels() const { return latent_channels * patch_size[0] * patch_size[1]; }
  const char* class_name() const { return kind == VaeKind::kFlux2 ? "AutoencoderKLFlux2" : "AutoencoderKL"; }

  // diffusers config.json. `source` names the file in errors.
  static VaeConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
  // Every size the tensor shapes determine (single files come without config.json): `shape_of`
  // gives the shape of a tensor by its diffusers name, or nothing when absent. norm_num_groups,
  // which no shape shows, stays at the real models' 32.
  using ShapeOf = std::function<std::optional<std::vector<int64_t>>(const std::string&)>;
  static VaeConfig from_weights(const ShapeOf& shape_of, const std::string& source);
  void validate(const std::string& source) const;  // throws dt::Error naming `source`
};

}  // namespace dt
