#include "models/zimage/weights.h"

#include <filesystem>
#include <regex>

#include <torch/torch.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "lora/keymap.h"
#include "nn/load_state.h"

namespace dt::zimage {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

std::string strip_prefix(const std::string& name) {
  for (const char* prefix : {"model.diffusion_model.", "diffusion_model."})
    if (starts_with(name, prefix)) return name.substr(std::strlen(prefix));
  return name;
}

}  // namespace

std::string diffusers_name(const std::string& raw) {
  std::string name = strip_prefix(raw);
  for (const auto& [from, to] : {std::pair{"x_embedder", "all_x_embedder.2-1"}, {"final_layer", "all_final_layer.2-1"}})
    if (name == from || starts_with(name, std::string(from) + ".")) return to + name.substr(std::strlen(from));
  static const std::regex attention(R"(^((?:layers|noise_refiner|context_refiner)\.\d+\.attention)\.(q_norm|k_norm|out)(\..*)?$)");
  std::smatch m;
  if (std::regex_match(name, m, attention)) {
    const std::string part = m[2] == "q_norm" ? "norm_q" : m[2] == "k_norm" ? "norm_k" : "to_out.0";
    return m[1].str() + "." + part + m[3].str();
  }
  return name;
}

bool is_zimage_checkpoint(const Checkpoint& ck) {
  bool modulated_layer = false, caption_norm = false, siglip = false;
  for (const auto& raw : ck.names()) {
    const std::string name = strip_prefix(raw);
    modulated_layer |= name == "layers.0.adaLN_modulation.0.weight";
    caption_norm |= name == "cap_embedder.0.weight";
    siglip |= starts_with(name, "siglip_embedder.");
  }
  return modulated_layer && caption_norm && !siglip;
}

std::string describe_checkpoint(const Checkpoint& ck) {
  if (!is_zimage_checkpoint(ck)) return "";
  bool comfyui = false;
  int64_t dim = 0, layers = 0;
  for (const auto& raw : ck.names()) {
    const std::string name = strip_prefix(raw);
    comfyui |= diffusers_name(name) != name || name.find(".attention.qkv.") != std::string::npos;
    if (name == "cap_embedder.1.weight") dim = ck.info(raw).shape.at(0);
    if (auto n = lora::match_template("layers.{n}.adaLN_modulation.0.weight", name)) layers = std::max<int64_t>(layers, std::stoll(n->at(0)) + 1);
  }
  return "zimage transformer, " + std::string(comfyui ? "ComfyUI / original names" : "diffusers names") + ", dim " +
         std::to_string(dim) + (dim == 3840 ? " (Z-Image 6B)" : "") + ", " + std::to_string(layers) + " layers";
}

std::map<std::string, StoredTensor> diffusers_tensors(const Checkpoint& ck) {
  std::map<std::string, StoredTensor> out;
  auto put = [&](const std::string& name, StoredTensor t, const std::string& from) {
    if (!out.emplace(name, std::move(t)).second)
      throw file_error(ck.path(), "tensor '" + from + "' maps to '" + name + "', which another tensor already gave");
  };
  for (const auto& raw : ck.names()) {
    std::string name = diffusers_name(raw);
    if (starts_with(name, "siglip_embedder.") || starts_with(name, "siglip_refiner."))
      throw file_error(ck.path(), "this is the Z-Image Omni variant (SigLIP branch), which is not supported");
    if (name == "norm_final.weight") continue;  // the final LayerNorm has no parameters
    const std::string qkv = ".attention.qkv.weight";
    if (name.size() > qkv.size() && name.compare(name.size() - qkv.size(), qkv.size(), qkv) == 0) {
      const StoredTensor fused = ck.stored(raw);  // [3·dim, dim]: rows of q, then k, then v
      if (fused.sizes().size() != 2 || fused.sizes()[0] % 3)
        throw file_error(ck.path(), "fused '" + raw + "' must be [3·dim, dim]");
      const int64_t rows = fused.sizes()[0] / 3;
      const std::string block = name.substr(0, name.size() - std::strlen("qkv.weight"));
      for (const auto& [i, part] : {std::pair{0, "to_q.weight"}, {1, "to_k.weight"}, {2, "to_v.weight"}})
        put(block + part, fused.rows([&](const at::Tensor& t) { return t.narrow(0, i * rows, rows); }), raw);
      continue;
    }
    put(name, ck.stored(raw), raw);
  }
  return out;
}

ZImageTransformer load_transformer(const std::string& path, const LoadOptions& options,
                                   const std::optional<ZImageConfig>& config) {
  Checkpoint ck = Checkpoint::open(path);
  std::map<std::string, StoredTensor> tensors = diffusers_tensors(ck);
  ZImageConfig c;
  if (config) c = *config;
  else if (!ck.config().empty()) c = ZImageConfig::from_json(ck.config(), (std::filesystem::path(path) / "config.json").string());
  else {
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (const auto& [name, t] : tensors) shapes.emplace_back(name, t.sizes().vec());
    c = infer_zimage_config(shapes, path);
  }
  ZImageTransformer model(c);
  if (options.block_weights != WeightFormat::dense) model->store_blocks_8bit(options.block_weights, nn::Store8bit::on_load);
  nn::load_state(*model, tensors, path, options.device, options.compute_dtype);
  return model;
}

void write_random_checkpoint(const std::string& dir, const ZImageConfig& config, uint64_t seed, c10::ScalarType dtype) {
  ZImageTransformer model(config);
  NamedTensors tensors = nn::golden_recipe_weights(*model, seed, {"x_pad_token", "cap_pad_token"});
  for (auto& [name, t] : tensors) t = t.to(dtype);
  write_model_folder(dir, "diffusion_pytorch_model.safetensors", tensors, config.to_json());
}

}  // namespace dt::zimage
