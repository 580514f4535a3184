// Flux2Transformer2DModel configuration: the fields of the diffusers config.json (specs/flux2.md §2).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dt {

struct Flux2Config {
  int64_t patch_size = 1;
  int64_t in_channels = 128;
  int64_t out_channels = 128;  // config.json null → in_channels
  int64_t num_layers = 5;            // double-stream blocks
  int64_t num_single_layers = 20;    // single-stream blocks
  int64_t attention_head_dim = 128;
  int64_t num_attention_heads = 24;
  int64_t joint_attention_dim = 7680;
  int64_t timestep_guidance_channels = 256;
  double mlp_ratio = 3.0;
  std::vector<int64_t> axes_dims_rope = {32, 32, 32, 32};
  double rope_theta = 2000.0;
  double eps = 1e-6;
  bool guidance_embeds = false;  // FLUX.2 [dev] only; klein has no guidance embedder

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  // int(dim · mlp_ratio) as the reference computes it: the SwiGLU hidden width.
  int64_t mlp_hidden() const { return static_cast<int64_t>(static_cast<double>(inner_dim()) * mlp_ratio); }

  // From a diffusers config.json; throws dt::Error naming `path` for a missing or bad field.
  static Flux2Config from_json(const nlohmann::json& j, const std::string& path);
  nlohmann::json to_json() const;  // a config.json diffusers accepts
  void validate(const std::string& path) const;
};

// Sizes from the tensor shapes of a checkpoint already in diffusers names (single files carry no
// config.json). Every size is visible in the weights; the RoPE split is the released models' even
// four-way split of the head (32 each for head_dim 128), θ 2000 and eps 1e-6.
Flux2Config infer_flux2_config(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                               const std::string& path);

}  // namespace dt
