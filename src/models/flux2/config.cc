#include "models/flux2/config.h"

#include <map>

#include "core/error.h"

namespace dt {

Flux2Config Flux2Config::from_json(const nlohmann::json& j, const std::string& path) {
  Flux2Config c;
  auto read = [&](const char* key, auto& field) {
    if (!j.contains(key) || j[key].is_null()) return;  // absent: the diffusers class default
    try {
      j[key].get_to(field);
    } catch (const nlohmann::json::exception&) {
      throw file_error(path, std::string("config field '") + key + "' has the wrong type: " + j[key].dump());
    }
  };
  if (!j.is_object()) throw file_error(path, "config is not a JSON object");
  if (j.contains("_class_name") && j["_class_name"] != "Flux2Transformer2DModel")
    throw file_error(path, "config is for " + j["_class_name"].dump() + ", not Flux2Transformer2DModel");
  // The diffusers class defaults are FLUX.2 [dev]'s; a klein config.json states its sizes.
  c.num_layers = 8;
  c.num_single_layers = 48;
  c.num_attention_heads = 48;
  c.joint_attention_dim = 15360;
  c.guidance_embeds = true;
  read("patch_size", c.patch_size);
  read("in_channels", c.in_channels);
  c.out_channels = c.in_channels;
  read("out_channels", c.out_channels);
  read("num_layers", c.num_layers);
  read("num_single_layers", c.num_single_layers);
  read("attention_head_dim", c.attention_head_dim);
  read("num_attention_heads", c.num_attention_heads);
  read("joint_attention_dim", c.joint_attention_dim);
  read("timestep_guidance_channels", c.timestep_guidance_channels);
  read("mlp_ratio", c.mlp_ratio);
  read("axes_dims_rope", c.axes_dims_rope);
  read("rope_theta", c.rope_theta);
  read("eps", c.eps);
  read("guidance_embeds", c.guidance_embeds);
  c.validate(path);
  return c;
}

void Flux2Config::validate(const std::string& path) const {
  auto bad = [&](const std::string& what) { return file_error(path, "invalid FLUX.2 transformer config: " + what); };
  if (guidance_embeds)
    throw file_error(path, "FLUX.2 [dev] (guidance embedder) is not supported; deltatrain trains FLUX.2 [klein]");
  if (patch_size != 1) throw bad("patch_size must be 1 (tokens are 2×2-patchified latents already)");
  if (in_channels < 1 || out_channels < 1 || num_layers < 0 || num_single_layers < 0 || attention_head_dim < 1 ||
      num_attention_heads < 1 || joint_attention_dim < 1 || timestep_guidance_channels < 2)
    throw bad("sizes must be positive");
  if (timestep_guidance_channels % 2) throw bad("timestep_guidance_channels must be even");
  if (!(mlp_ratio > 0) || mlp_hidden() < 1) throw bad("mlp_ratio must be positive");
  int64_t sum = 0;
  for (int64_t d : axes_dims_rope) {
    if (d < 2 || d % 2) throw bad("axes_dims_rope entries must be even and positive");
    sum += d;
  }
  if (axes_dims_rope.size() != 4) throw bad("axes_dims_rope needs 4 entries (t, h, w, l)");
  if (sum != attention_head_dim)
    throw bad("axes_dims_rope sum to " + std::to_string(sum) + " but attention_head_dim is " + std::to_string(attention_head_dim));
  if (!(eps > 0) || !(rope_theta > 0)) throw bad("eps and rope_theta must be positive");
}

nlohmann::json Flux2Config::to_json() const {
  return {{"_class_name", "Flux2Transformer2DModel"},
          {"_diffusers_version", "0.40.0"},
          {"attention_head_dim", attention_head_dim},
          {"axes_dims_rope", axes_dims_rope},
          {"eps", eps},
          {"guidance_embeds", guidance_embeds},
          {"in_channels", in_channels},
          {"joint_attention_dim", joint_attention_dim},
          {"mlp_ratio", mlp_ratio},
          {"num_attention_heads", num_attention_heads},
          {"num_layers", num_layers},
          {"num_single_layers", num_single_layers},
          {"out_channels", out_channels == in_channels ? nlohmann::json(nullptr) : nlohmann::json(out_channels)},
          {"patch_size", patch_size},
          {"rope_theta", rope_theta},
          {"timestep_guidance_channels", timestep_guidance_channels}};
}

Flux2Config infer_flux2_config(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                               const std::string& path) {
  std::map<std::string, std::vector<int64_t>> shape(shapes.begin(), shapes.end());
  auto need = [&](const std::string& name) -> const std::vector<int64_t>& {
    auto it = shape.find(name);
    if (it == shape.end() || it->second.empty()) throw file_error(path, "cannot infer the FLUX.2 config: no tensor '" + name + "'");
    return it->second;
  };
  auto count = [&](const std::string& prefix, const std::string& suffix) {
    int64_t n = 0;
    while (shape.count(prefix + std::to_string(n) + suffix)) ++n;
    return n;
  };
  Flux2Config c;
  const auto& x_embedder = need("x_embedder.weight");  // [d, in_channels]
  const int64_t d = x_embedder.at(0);
  c.in_channels = x_embedder.at(1);
  c.out_channels = need("proj_out.weight").at(0);
  c.joint_attention_dim = need("context_embedder.weight").at(1);
  c.timestep_guidance_channels = need("time_guidance_embed.timestep_embedder.linear_1.weight").at(1);
  c.guidance_embeds = shape.count("time_guidance_embed.guidance_embedder.linear_1.weight") != 0;
  c.num_layers = count("transformer_blocks.", ".attn.to_q.weight");
  c.num_single_layers = count("single_transformer_blocks.", ".attn.to_qkv_mlp_proj.weight");
  const std::string norm_q = c.num_layers ? "transformer_blocks.0.attn.norm_q.weight" : "single_transformer_blocks.0.attn.norm_q.weight";
  c.attention_head_dim = need(norm_q).at(0);
  if (c.attention_head_dim % 8 || d % c.attention_head_dim)
    throw file_error(path, "cannot infer the FLUX.2 RoPE layout: head_dim " + std::to_string(c.attention_head_dim) +
                               " (inner dim " + std::to_string(d) + ")");
  c.num_attention_heads = d / c.attention_head_dim;
  c.axes_dims_rope.assign(4, c.attention_head_dim / 4);
  // SwiGLU input width 2·mlp_hidden: ff.linear_in rows, or what to_qkv_mlp_proj has beyond q, k, v.
  const int64_t swiglu_in = c.num_layers ? need("transformer_blocks.0.ff.linear_in.weight").at(0)
                                         : need("single_transformer_blocks.0.attn.to_qkv_mlp_proj.weight").at(0) - 3 * d;
  c.mlp_ratio = static_cast<double>(swiglu_in) / (2.0 * static_cast<double>(d));
  c.validate(path);
  return c;
}

}  // namespace dt
