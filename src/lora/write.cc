// Writing LoRA files (lora-formats.md §3): one writer parameterised by the layout of each Format.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/listing.h"
#include "io/safetensors.h"
#include "lora/file.h"

namespace dt::lora {
namespace {

struct Layout {
  Format format;
  const char* name;
  const char* prefix;
  bool native;       // native names (fused modules), else diffusers names
  bool tool;         // a tool's layout: native names when the family's tools use them
  bool flat;         // '.' → '_' (kohya)
  bool down_up;      // lora_down / lora_up, else lora_A / lora_B
  // kept: an `.alpha` tensor per module; folded: scale folded into B, no alpha (clients read scale
  // 1); peft: folded, and a PEFT config saying scale 1 in the metadata (ComfyUI ignores metadata).
  enum { kept, folded, peft } alpha;
};

const Layout kLayouts[] = {
    {Format::comfyui, "comfyui", "diffusion_model.", false, true, false, false, Layout::kept},
    {Format::comfyui_native, "comfyui-native", "diffusion_model.", true, true, false, true, Layout::kept},
    {Format::peft, "peft", "transformer.", false, false, false, false, Layout::peft},
    {Format::kohya, "kohya", "lora_unet_", false, true, true, true, Layout::kept},
    {Format::onetrainer, "onetrainer", "transformer.", false, false, false, true, Layout::kept},
    {Format::original, "original", "", false, true, false, false, Layout::kept},
    {Format::aitoolkit, "aitoolkit", "diffusion_model.", false, true, false, false, Layout::folded},
};

const Layout& layout(Format f) {
  for (const auto& l : kLayouts)
    if (l.format == f) return l;
  throw Error("unknown LoRA format");
}

// Fuses the adapters of a native module's row blocks exactly (lora-formats.md §4.1): down stacked,
// up block-diagonal; a block without an adapter contributes zero rows. Equal scales stay in alpha,
// different ones are folded into the up blocks.
LoraModule fuse(const std::string& name, const std::vector<const LoraModule*>& parts) {
  int64_t in = 0, rows = 0, rank = 0;
  double scale = 0;
  bool same_scale = true;
  for (const auto* p : parts)
    if (p) {
      in = p->down.size(1);
      rows = p->up.size(0);
      if (rank > 0 && p->scale() != scale) same_scale = false;
      scale = p->scale();
      rank += p->rank();
    }
  at::Tensor down = torch::zeros({rank, in}), up = torch::zeros({rows * static_cast<int64_t>(parts.size()), rank});
  int64_t col = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!parts[i]) continue;
    const LoraModule& p = *parts[i];
    down.slice(0, col, col + p.rank()).copy_(p.down);
    up.slice(0, i * rows, (i + 1) * rows).slice(1, col, col + p.rank()).copy_(same_scale ? p.up : p.up * p.scale());
    col += p.rank();
  }
  return {name, down, up, same_scale ? scale * rank : static_cast<double>(rank)};
}

// The modules as the layout names them (native names fuse and swap as the key map says).
std::vector<std::pair<std::string, LoraModule>> in_layout(const LoraWeights& lora, const KeyMap& keys, bool native) {
  std::vector<std::pair<std::string, LoraModule>> out;
  if (!native) {
    for (const auto& m : lora.modules) out.emplace_back(m.name, m);
    return out;
  }
  std::map<std::string, std::vector<const LoraModule*>> fused;
  for (const auto& m : lora.modules) {
    NativeName n = native_name(keys, m.name);
    if (!n.rule || n.rule->diffusers.size() == 1) {
      LoraModule copy = m;
      if (n.rule && n.rule->swap_halves) {
        const int64_t half = m.up.size(0) / 2;
        copy.up = torch::cat({m.up.slice(0, half), m.up.slice(0, 0, half)});
      }
      out.emplace_back(n.name, copy);
      continue;
    }
    auto& parts = fused[n.name];
    parts.resize(n.rule->diffusers.size(), nullptr);
    parts[n.part] = &m;
  }
  for (const auto& [name, parts] : fused) out.emplace_back(name, fuse(name, parts));
  return out;
}

std::string flatten(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

template <class T>
T most_common(const std::vector<T>& values) {
  std::map<T, int> count;
  for (const auto& v : values) ++count[v];
  return std::max_element(count.begin(), count.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}

std::string number(double v) {
  nlohmann::json j = v;
  if (v == std::floor(v) && std::abs(v) < 1e15) j = static_cast<int64_t>(v);
  return j.dump();
}

}  // namespace

const char* format_name(Format f) { return layout(f).name; }

Format format_by_name(const std::string& name) {
  std::vector<std::string> known;
  for (const auto& l : kLayouts) {
    if (name == l.name) return l.format;
    known.push_back(l.name);
  }
  throw Error("unknown LoRA format '" + name + "' (known: " + join(known) + ")");
}

void write_lora(const std::string& path, const LoraWeights& lora, const KeyMap& keys, const WriteOptions& options) {
  if (lora.modules.empty()) throw file_error(path, "refusing to write a LoRA without modules");
  Layout l = layout(options.format);
  if (l.format == Format::comfyui && keys.comfyui_as_diffusers) l = {l.format, l.name, "transformer.", false, false, false, false, Layout::folded};
  const bool native = l.native || (l.tool && keys.comfyui_native);
  const bool folded = l.alpha != Layout::kept;
  NamedTensors tensors;
  std::vector<int64_t> ranks;
  std::vector<double> alphas;
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& m : lora.modules) {
    ranks.push_back(m.rank());
    alphas.push_back(m.alpha);
    targets.push_back(m.name);
  }
  auto add = [&](const std::string& stem, const LoraModule& m) {
    at::Tensor up = folded ? m.up * m.scale() : m.up;
    tensors.emplace_back(stem + (l.down_up ? ".lora_down.weight" : ".lora_A.weight"), m.down.to(torch::kCPU, options.dtype).contiguous());
    tensors.emplace_back(stem + (l.down_up ? ".lora_up.weight" : ".lora_B.weight"), up.to(torch::kCPU, options.dtype).contiguous());
    if (!folded) tensors.emplace_back(stem + ".alpha", torch::tensor(static_cast<float>(m.alpha)));
  };
  for (const auto& [name, m] : in_layout(lora, keys, native)) add(l.prefix + (l.flat ? flatten(name) : name), m);
  if (folded && !native && std::string_view(l.prefix) == "transformer." && !keys.comfyui_native_only.empty()) {
    LoraWeights copies;
    for (const auto& m : lora.modules)
      for (const auto& tmpl : keys.comfyui_native_only)
        if (match_template(tmpl, m.name)) copies.modules.push_back(m);
    for (const auto& [name, m] : in_layout(copies, keys, true)) add("lora_unet_" + flatten(name), m);
  }

  std::map<std::string, std::string> meta = options.metadata;
  const int64_t rank = most_common(ranks);
  const double alpha = most_common(alphas);
  bool mixed_rank = false, mixed_alpha = false;
  for (size_t i = 0; i < ranks.size(); ++i) {
    mixed_rank = mixed_rank || ranks[i] != rank;
    mixed_alpha = mixed_alpha || alphas[i] != alpha;
  }
  meta["modelspec.sai_model_spec"] = "1.0.0";
  meta["modelspec.architecture"] = keys.architecture;
  meta["modelspec.title"] = "deltatrain LoRA";
  meta["deltatrain.version"] = DT_VERSION;
  meta["deltatrain.format"] = l.name;
  meta["deltatrain.rank"] = mixed_rank ? "mixed (most " + std::to_string(rank) + ")" : std::to_string(rank);
  meta["deltatrain.alpha"] = mixed_alpha ? "mixed (most " + number(alpha) + ")" : number(alpha);
  meta["deltatrain.targets"] = targets.dump();
  if (!options.base_model.empty()) meta["deltatrain.base_model"] = options.base_model;
  if (l.alpha == Layout::peft) {
    // The scale is in B, so every module's PEFT alpha is its rank. Keys carry the pipeline
    // component's prefix, as diffusers' save_lora_weights writes them and its loader reads them.
    nlohmann::ordered_json rank_pattern = nlohmann::ordered_json::object(), alpha_pattern = nlohmann::ordered_json::object();
    for (const auto& m : lora.modules)
      if (m.rank() != rank) alpha_pattern[m.name] = rank_pattern[m.name] = m.rank();
    const std::string component = "transformer.";
    nlohmann::ordered_json config;
    config[component + "alpha_pattern"] = alpha_pattern;
    config[component + "bias"] = "none";
    config[component + "lora_alpha"] = rank;
    config[component + "lora_dropout"] = 0.0;
    config[component + "peft_type"] = "LORA";
    config[component + "r"] = rank;
    config[component + "rank_pattern"] = rank_pattern;
    config[component + "target_modules"] = targets;
    config[component + "use_dora"] = false;
    config[component + "use_rslora"] = false;
    meta["lora_adapter_metadata"] = config.dump(2);
    meta["format"] = "pt";
  }
  write_safetensors(path, tensors, meta);
}

}  // namespace dt::lora
