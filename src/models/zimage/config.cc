#include "models/zimage/config.h"

#include <map>

#include "core/error.h"

namespace dt {

std::string ZImageConfig::patch_key(size_t i) const {
  return std::to_string(all_patch_size.at(i)) + "-" + std::to_string(all_f_patch_size.at(i));
}

ZImageConfig ZImageConfig::from_json(const nlohmann::json& j, const std::string& path) {
  ZImageConfig c;
  auto read = [&](const char* key, auto& field) {
    if (!j.contains(key) || j[key].is_null()) return;  // absent: the diffusers class default
    try {
      j[key].get_to(field);
    } catch (const nlohmann::json::exception&) {
      throw file_error(path, std::string("config field '") + key + "' has the wrong type: " + j[key].dump());
    }
  };
  if (j.contains("_class_name") && j["_class_name"] != "ZImageTransformer2DModel")
    throw file_error(path, "config is for " + j["_class_name"].dump() + ", not ZImageTransformer2DModel");
  if (j.contains("siglip_feat_dim") && !j["siglip_feat_dim"].is_null())
    throw file_error(path, "the Z-Image Omni variant (siglip_feat_dim set) is not supported");
  c.axes_lens = {1024, 512, 512};  // the diffusers class default, used when config.json omits it
  read("all_patch_size", c.all_patch_size);
  read("all_f_patch_size", c.all_f_patch_size);
  read("in_channels", c.in_channels);
  read("dim", c.dim);
  read("n_layers", c.n_layers);
  read("n_refiner_layers", c.n_refiner_layers);
  read("n_heads", c.n_heads);
  read("n_kv_heads", c.n_kv_heads);
  read("norm_eps", c.norm_eps);
  read("qk_norm", c.qk_norm);
  read("cap_feat_dim", c.cap_feat_dim);
  read("rope_theta", c.rope_theta);
  read("t_scale", c.t_scale);
  read("axes_dims", c.axes_dims);
  read("axes_lens", c.axes_lens);
  c.validate(path);
  return c;
}

void ZImageConfig::validate(const std::string& path) const {
  auto bad = [&](const std::string& what) { return file_error(path, "invalid Z-Image config: " + what); };
  if (all_patch_size.empty() || all_patch_size.size() != all_f_patch_size.size())
    throw bad("all_patch_size and all_f_patch_size must be non-empty and of equal length");
  for (size_t i = 0; i < all_patch_size.size(); ++i)
    if (all_patch_size[i] < 1 || all_f_patch_size[i] < 1) throw bad("patch sizes must be positive");
  if (in_channels < 1 || dim < 1 || n_heads < 1 || cap_feat_dim < 1 || n_layers < 0 || n_refiner_layers < 0)
    throw bad("sizes must be positive");
  if (dim % n_heads) throw bad("dim " + std::to_string(dim) + " is not a multiple of n_heads " + std::to_string(n_heads));
  if (axes_dims.size() != 3 || axes_lens.size() != 3) throw bad("axes_dims and axes_lens need 3 entries (frame, height, width)");
  int64_t sum = 0;
  for (size_t a = 0; a < 3; ++a) {
    if (axes_dims[a] < 2 || axes_dims[a] % 2) throw bad("axes_dims entries must be even and positive");
    if (axes_lens[a] < 1) throw bad("axes_lens entries must be positive");
    sum += axes_dims[a];
  }
  if (sum != head_dim()) throw bad("axes_dims sum to " + std::to_string(sum) + " but head_dim is " + std::to_string(head_dim()));
  if (!(norm_eps > 0) || !(rope_theta > 0) || !(t_scale > 0)) throw bad("norm_eps, rope_theta and t_scale must be positive");
}

nlohmann::json ZImageConfig::to_json() const {
  return {{"_class_name", "ZImageTransformer2DModel"},
          {"_diffusers_version", "0.36.0"},
          {"all_f_patch_size", all_f_patch_size},
          {"all_patch_size", all_patch_size},
          {"axes_dims", axes_dims},
          {"axes_lens", axes_lens},
          {"cap_feat_dim", cap_feat_dim},
          {"dim", dim},
          {"in_channels", in_channels},
          {"n_heads", n_heads},
          {"n_kv_heads", n_kv_heads},
          {"n_layers", n_layers},
          {"n_refiner_layers", n_refiner_layers},
          {"norm_eps", norm_eps},
          {"qk_norm", qk_norm},
          {"rope_theta", rope_theta},
          {"siglip_feat_dim", nullptr},
          {"t_scale", t_scale}};
}

ZImageConfig infer_zimage_config(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                                 const std::string& path) {
  std::map<std::string, std::vector<int64_t>> shape(shapes.begin(), shapes.end());
  auto need = [&](const std::string& name) -> const std::vector<int64_t>& {
    auto it = shape.find(name);
    if (it == shape.end()) throw file_error(path, "cannot infer the Z-Image config: no tensor '" + name + "'");
    return it->second;
  };
  auto count_blocks = [&](const std::string& prefix) {
    int64_t n = 0;
    while (shape.count(prefix + std::to_string(n) + ".attention_norm1.weight")) ++n;
    return n;
  };
  ZImageConfig c;
  const auto& x_embedder = need("all_x_embedder.2-1.weight");  // [dim, 2·2·1·C]
  c.dim = x_embedder.at(0);
  c.in_channels = x_embedder.at(1) / 4;
  c.cap_feat_dim = need("cap_embedder.0.weight").at(0);
  c.n_layers = count_blocks("layers.");
  c.n_refiner_layers = count_blocks("noise_refiner.");
  c.qk_norm = shape.count("layers.0.attention.norm_q.weight") != 0;
  const int64_t head_dim = c.qk_norm ? need("layers.0.attention.norm_q.weight").at(0) : 128;
  if (head_dim != 128)
    throw file_error(path, "cannot infer the RoPE layout for head_dim " + std::to_string(head_dim) +
                               " from a single file; give the model's config.json");
  c.n_heads = c.n_kv_heads = c.dim / head_dim;
  c.validate(path);
  return c;
}

}  // namespace dt
