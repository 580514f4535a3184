// ZImageTransformer2DModel configuration: the fields of the diffusers config.json, plus the sizes
// the reference derives from them (specs/z-image.md §2).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dt {

class Checkpoint;

struct ZImageConfig {
  std::vector<int64_t> all_patch_size = {2};
  std::vector<int64_t> all_f_patch_size = {1};
  int64_t in_channels = 16;
  int64_t dim = 3840;
  int64_t n_layers = 30;
  int64_t n_refiner_layers = 2;
  int64_t n_heads = 30;
  int64_t n_kv_heads = 30;  // stored only: the reference always uses n_heads for k and v
  double norm_eps = 1e-5;
  bool qk_norm = true;
  int64_t cap_feat_dim = 2560;
  double rope_theta = 256.0;
  double t_scale = 1000.0;
  std::vector<int64_t> axes_dims = {32, 48, 48};
  std::vector<int64_t> axes_lens = {1536, 512, 512};

  int64_t head_dim() const { return dim / n_heads; }
  int64_t adaln_dim() const { return std::min<int64_t>(dim, 256); }
  // int(dim / 3 * 8) in the reference's float arithmetic: 10240 for dim 3840, 170 for dim 64.
  int64_t ffn_dim() const { return static_cast<int64_t>(static_cast<double>(dim) / 3.0 * 8.0); }
  // ModuleDict key of patch configuration i: "2-1".
  std::string patch_key(size_t i) const;

  // From a diffusers config.json; throws dt::Error naming `path` for a missing or bad field.
  static ZImageConfig from_json(const nlohmann::json& j, const std::string& path);
  nlohmann::json to_json() const;  // a config.json diffusers accepts
  void validate(const std::string& path) const;
};

// Sizes from the tensor shapes of a checkpoint already in diffusers names (single files carry no
// config.json). RoPE axes and constants cannot be seen in the weights: they are the released
// model's, which requires head_dim 128.
ZImageConfig infer_zimage_config(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                                 const std::string& path);

}  // namespace dt
