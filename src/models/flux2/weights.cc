#include "models/flux2/weights.h"

#include <cmath>
#include <filesystem>

#include <torch/torch.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "lora/keymap.h"
#include "models/flux2/family.h"
#include "nn/load_state.h"

namespace dt::flux2 {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string strip_prefix(const std::string& name) {
  for (const char* prefix : {"model.diffusion_model.", "diffusion_model."})
    if (starts_with(name, prefix)) return name.substr(std::strlen(prefix));
  return name;
}

// The q/k RMSNorm weights, whose original parameter is called `scale`. The Linear layers' names
// come from the LoRA key map (models/flux2/lora_keys.cc), one table for both.
const std::pair<const char*, const char*> kNorms[] = {
    {"double_blocks.{n}.img_attn.norm.query_norm.scale", "transformer_blocks.{n}.attn.norm_q.weight"},
    {"double_blocks.{n}.img_attn.norm.key_norm.scale", "transformer_blocks.{n}.attn.norm_k.weight"},
    {"double_blocks.{n}.txt_attn.norm.query_norm.scale", "transformer_blocks.{n}.attn.norm_added_q.weight"},
    {"double_blocks.{n}.txt_attn.norm.key_norm.scale", "transformer_blocks.{n}.attn.norm_added_k.weight"},
    {"single_blocks.{n}.norm.query_norm.scale", "single_transformer_blocks.{n}.attn.norm_q.weight"},
    {"single_blocks.{n}.norm.key_norm.scale", "single_transformer_blocks.{n}.attn.norm_k.weight"},
};

at::Tensor swap_halves(const at::Tensor& t) {
  const int64_t half = t.size(0) / 2;
  return torch::cat({t.narrow(0, half, t.size(0) - half), t.narrow(0, 0, half)});
}

}  // namespace

bool is_flux2_checkpoint(const Checkpoint& ck) {
  for (const auto& raw : ck.names()) {
    const std::string name = strip_prefix(raw);
    if (name == "single_stream_modulation.lin.weight" || name == "single_stream_modulation.linear.weight") return true;
  }
  return false;
}

std::string describe_checkpoint(const Checkpoint& ck) {
  if (!is_flux2_checkpoint(ck)) return "";
  bool original = false;
  int64_t inner = 0, double_blocks = 0, single_blocks = 0;
  for (const auto& raw : ck.names()) {
    const std::string name = strip_prefix(raw);
    original |= name == "single_stream_modulation.lin.weight";
    if (name == "x_embedder.weight" || name == "img_in.weight") inner = ck.info(raw).shape.at(0);
    for (const char* qkv : {"transformer_blocks.{n}.attn.to_q.weight", "double_blocks.{n}.img_attn.qkv.weight"})
      if (auto n = lora::match_template(qkv, name)) double_blocks = std::max<int64_t>(double_blocks, std::stoll(n->at(0)) + 1);
    for (const char* proj : {"single_transformer_blocks.{n}.attn.to_out.weight", "single_blocks.{n}.linear2.weight"})
      if (auto n = lora::match_template(proj, name)) single_blocks = std::max<int64_t>(single_blocks, std::stoll(n->at(0)) + 1);
  }
  const char* variant = inner == 3072 ? " (klein 4B)" : inner == 4096 ? " (klein 9B)" : inner == 6144 ? " (dev)" : "";
  return "flux2-klein transformer, " + std::string(original ? "original BFL names" : "diffusers names") + ", inner dim " +
         std::to_string(inner) + variant + ", " + std::to_string(double_blocks) + " double + " + std::to_string(single_blocks) +
         " single blocks";
}

std::map<std::string, StoredTensor> diffusers_tensors(const Checkpoint& ck) {
  const lora::KeyMap& keys = lora_keys();
  std::map<std::string, StoredTensor> out;
  auto put = [&](const std::string& name, StoredTensor t, const std::string& from) {
    if (!out.emplace(name, std::move(t)).second)
      throw file_error(ck.path(), "tensor '" + from + "' maps to '" + name + "', which another tensor already gave");
  };
  for (const auto& raw : ck.names()) {
    const std::string name = strip_prefix(raw);
    std::string norm;
    for (const auto& [original, diffusers] : kNorms)
      if (auto numbers = lora::match_template(original, name)) norm = lora::fill_template(diffusers, *numbers);
    if (!norm.empty() || !ends_with(name, ".weight")) {
      put(norm.empty() ? name : norm, ck.stored(raw), raw);
      continue;
    }
    const std::string module = name.substr(0, name.size() - std::strlen(".weight"));
    const lora::NativeRule* rule = nullptr;
    std::vector<std::string> numbers;
    for (const auto& r : keys.native)
      if (auto n = lora::match_template(r.native, module)) {
        rule = &r;
        numbers = *n;
        break;
      }
    if (!rule) {
      put(name, ck.stored(raw), raw);  // a diffusers name, or one the strict loader will report
      continue;
    }
    StoredTensor w = ck.stored(raw);
    const int64_t parts = static_cast<int64_t>(rule->diffusers.size());
    if (w.sizes().size() != 2 || w.sizes()[0] % parts || (rule->swap_halves && w.sizes()[0] % 2))
      throw file_error(ck.path(), "'" + raw + "' has shape " + c10::str(w.sizes()) + ", not " + std::to_string(parts) +
                                      " equal row blocks of a matrix");
    if (rule->swap_halves) w = w.rows(swap_halves);
    const int64_t rows = w.sizes()[0] / parts;
    for (int64_t i = 0; i < parts; ++i)
      put(lora::fill_template(rule->diffusers[i], numbers) + ".weight",
          w.rows([&](const at::Tensor& t) { return t.narrow(0, i * rows, rows); }), raw);
  }
  return out;
}

Flux2Transformer load_transformer(const std::string& path, const LoadOptions& options, const std::optional<Flux2Config>& config) {
  Checkpoint ck = Checkpoint::open(path);
  if (!is_flux2_checkpoint(ck)) throw file_error(path, "not a FLUX.2 transformer checkpoint (no single_stream_modulation)");
  std::map<std::string, StoredTensor> tensors = diffusers_tensors(ck);
  Flux2Config c;
  if (config) c = *config;
  else if (!ck.config().empty()) c = Flux2Config::from_json(ck.config(), (std::filesystem::path(path) / "config.json").string());
  else {
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (const auto& [name, t] : tensors) shapes.emplace_back(name, t.sizes().vec());
    c = infer_flux2_config(shapes, path);
  }
  Flux2Transformer model(c);
  if (options.block_weights != WeightFormat::dense) model->store_blocks_8bit(options.block_weights, nn::Store8bit::on_load);
  nn::load_state(*model, tensors, path, options.device, options.compute_dtype);
  return model;
}

NamedTensors random_weights(const Flux2Config& config, uint64_t seed) {
  Flux2Transformer model(config);  // no biases: the recipe gives matrices and norm scales
  NamedTensors tensors = nn::golden_recipe_weights(*model, seed);
  for (auto& [name, value] : tensors)
    if (starts_with(name, "time_guidance_embed.")) value = value * 1.5;
  return tensors;
}

void write_random_checkpoint(const std::string& dir, const Flux2Config& config, uint64_t seed, c10::ScalarType dtype) {
  NamedTensors tensors = random_weights(config, seed);
  for (auto& [name, t] : tensors) t = t.to(dtype);
  write_model_folder(dir, "diffusion_pytorch_model.safetensors", tensors, config.to_json());
}

void write_original_file(const std::string& path, const std::map<std::string, at::Tensor>& diffusers, const std::string& prefix) {
  const lora::KeyMap& keys = lora_keys();
  std::map<std::string, std::vector<at::Tensor>> fused;  // original name → its row blocks
  NamedTensors out;
  for (const auto& [name, t] : diffusers) {
    std::string original = name;
    for (const auto& [from, to] : kNorms)
      if (auto numbers = lora::match_template(to, name)) original = lora::fill_template(from, *numbers);
    if (original == name && ends_with(name, ".weight")) {
      lora::NativeName n = lora::native_name(keys, name.substr(0, name.size() - std::strlen(".weight")));
      if (n.rule && n.rule->diffusers.size() > 1) {
        auto& parts = fused[n.name + ".weight"];
        parts.resize(n.rule->diffusers.size());
        parts[n.part] = t;
        continue;
      }
      original = n.name + ".weight";
      if (n.rule && n.rule->swap_halves) {
        out.emplace_back(prefix + original, swap_halves(t).contiguous());
        continue;
      }
    }
    out.emplace_back(prefix + original, t);
  }
  for (const auto& [name, parts] : fused) {
    for (const auto& p : parts)
      if (!p.defined()) throw Error("cannot write '" + name + "': a row block of the fused tensor is missing");
    out.emplace_back(prefix + name, torch::cat(parts).contiguous());
  }
  write_safetensors(path, out);
}

}  // namespace dt::flux2
