// Reading LoRA files of every layout (lora-formats.md §3, §4.4) into one file-independent form.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/listing.h"
#include "core/regex.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "lora/adapters.h"
#include "lora/file.h"

namespace dt::lora {
namespace {

enum class Part { down, up, alpha };

struct Suffix {
  const char* text;
  Part part;
  bool kohya_style;  // lora_down / lora_up naming (vs lora_A / lora_B)
};

const Suffix kSuffixes[] = {
    {".lora_down.weight", Part::down, true}, {".lora_up.weight", Part::up, true},
    {".lora_A.weight", Part::down, false},   {".lora_B.weight", Part::up, false},
    {".lora.down.weight", Part::down, true}, {".lora.up.weight", Part::up, true},
    {".alpha", Part::alpha, true},
};

// Adapter kinds that are not plain LoRA (recognised so the error can say what they are).
const char* const kOtherKinds[] = {".dora_scale", "lora_magnitude_vector", ".magnitude", ".hada_", ".lokr_",
                                   ".diff", ".oft_", ".lora_mid."};

struct Prefix {
  const char* text;
  bool flat;
};
const Prefix kPrefixes[] = {{"transformer.", false}, {"diffusion_model.", false}, {"lora_unet_", true},
                            {"lycoris_", true},      {"lora_transformer_", true}};

struct Group {
  std::string stem;  // the module part of the key, as in the file
  std::string keys[3];
  bool kohya_style = false;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Scale rules of a PEFT config (`lora_adapter_metadata` in the file, or an `adapter_config.json`
// beside it as PEFT's save_pretrained writes it): scale = lora_alpha / r, with the first matching
// alpha_pattern / rank_pattern key (in the JSON's order) overriding for a module.
struct PeftConfig {
  std::string source;  // where it was read, for messages
  double r = 0, lora_alpha = 0;
  bool rslora = false;
  std::vector<std::pair<std::string, double>> rank_pattern, alpha_pattern;
  // target_modules: a regex over the whole module name, or names matching the name or its tail.
  std::optional<std::string> target_regex;
  std::vector<std::string> target_names;

  static std::optional<PeftConfig> from(const std::map<std::string, std::string>& metadata, const std::string& path) {
    auto it = metadata.find("lora_adapter_metadata");
    if (it == metadata.end()) return std::nullopt;
    return parse_text(it->second, path, "lora_adapter_metadata");
  }

  // adapter_config.json in the LoRA file's folder, if there is one.
  static std::optional<PeftConfig> beside(const std::string& path) {
    const std::filesystem::path config = std::filesystem::path(path).parent_path() / "adapter_config.json";
    if (!std::filesystem::exists(config)) return std::nullopt;
    return parse_text(read_file(config.string()), config.string(), "adapter_config.json");
  }

  static PeftConfig parse_text(const std::string& text, const std::string& path, const std::string& source) {
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(text);
    } catch (const std::exception& e) {
      throw file_error(path, source + " is not JSON: " + e.what());
    }
    if (!j.is_object()) throw file_error(path, source + " is not a JSON object");
    if (!j.contains("r") && j.contains("transformer.r")) {  // diffusers pipelines prefix the component
      nlohmann::ordered_json inner;
      for (auto& [k, v] : j.items())
        if (starts_with(k, "transformer.")) inner[k.substr(12)] = v;
      j = inner;
    }
    PeftConfig c;
    c.source = source;
    try {
      c.r = j.at("r").get<double>();
      c.lora_alpha = j.value("lora_alpha", c.r);
      c.rslora = j.value("use_rslora", false);
      for (const char* field : {"rank_pattern", "alpha_pattern"}) {
        if (!j.contains(field) || j[field].is_null()) continue;
        auto& into = std::string(field) == "rank_pattern" ? c.rank_pattern : c.alpha_pattern;
        for (auto& [k, v] : j[field].items()) into.emplace_back(k, v.get<double>());
      }
      if (j.contains("target_modules") && j["target_modules"].is_string())
        c.target_regex = j["target_modules"].get<std::string>();
      else if (j.contains("target_modules") && j["target_modules"].is_array())
        c.target_names = j["target_modules"].get<std::vector<std::string>>();
    } catch (const std::exception& e) {
      throw file_error(path, source + " lacks a usable r / lora_alpha / target_modules: " + e.what());
    }
    if (!(c.r > 0) || !std::isfinite(c.lora_alpha)) throw file_error(path, source + ": r must be positive and lora_alpha finite");
    return c;
  }

  // PEFT: the first key k for which (.*\.)?(k)$ matches the module path from its start.
  double pick(const std::vector<std::pair<std::string, double>>& pattern, const std::string& module, double fallback,
              const std::string& path) const {
    for (const auto& [key, value] : pattern) {
      try {
        if (Regex("(.*\\.)?(" + key + ")$").match_prefix(module)) return value;
      } catch (const Error& e) {
        throw file_error(path, source + ": " + e.what());
      }
    }
    return fallback;
  }

  // The alpha giving PEFT's scale to an adapter of `rank` rows (r from the config must agree).
  double alpha_for(const std::string& module, int64_t rank, const std::string& path) const {
    double r_mod = pick(rank_pattern, module, r, path);
    double a_mod = pick(alpha_pattern, module, lora_alpha, path);
    if (static_cast<int64_t>(r_mod) != rank)
      throw file_error(path, module + ": rank " + std::to_string(rank) + " in the tensors but " +
                                 std::to_string(static_cast<int64_t>(r_mod)) + " in " + source);
    double scale = rslora ? a_mod / std::sqrt(r_mod) : a_mod / r_mod;
    return scale * static_cast<double>(rank);
  }

  // PEFT's target_modules rule: a string is a regex over the whole name; a list matches a name
  // equal to an entry or ending in "." + entry. No target_modules: every module.
  bool targets(const std::string& module, const std::string& path) const {
    if (target_regex) {
      try {
        return Regex("^(?:" + *target_regex + ")$").match_prefix(module);
      } catch (const Error& e) {
        throw file_error(path, source + ": target_modules: " + e.what());
      }
    }
    if (target_names.empty()) return true;
    for (const auto& t : target_names)
      if (module == t || ends_with(module, "." + t)) return true;
    return false;
  }
};

// Splits the adapter of a fused native module into its row blocks (lora-formats.md §4.1), exactly:
// block i keeps only the rank columns its rows of `up` use (the compact split of a block-diagonal
// fusion, rank R/3 and alpha/3), and a block no column reaches gets no adapter. A fused adapter
// that is entirely zero keeps every column in every block.
std::vector<LoraModule> split_fused(const LoraModule& fused, const std::vector<std::string>& names) {
  const int64_t k = static_cast<int64_t>(names.size()), rows = fused.up.size(0) / k, rank = fused.rank();
  const bool all_zero = !fused.up.ne(0).any().item<bool>();
  std::vector<LoraModule> out;
  for (int64_t i = 0; i < k; ++i) {
    at::Tensor up = fused.up.slice(0, i * rows, (i + 1) * rows);
    at::Tensor used = all_zero ? torch::arange(rank) : up.ne(0).any(0).nonzero().view(-1);
    if (used.numel() == 0) continue;
    const double kept = static_cast<double>(used.numel());
    out.push_back({names[i], fused.down.index_select(0, used), up.index_select(1, used),
                   fused.alpha * kept / static_cast<double>(rank)});
  }
  return out;
}

at::Tensor swap_halves(const at::Tensor& up) {
  const int64_t half = up.size(0) / 2;
  return torch::cat({up.slice(0, half), up.slice(0, 0, half)});
}

// The layout name for the file's keys (see Format in file.h).
std::string layout_name(const std::string& prefix, bool kohya_style, bool has_alpha, bool peft_metadata, bool fused) {
  if (prefix == "lora_unet_" || prefix == "lycoris_" || prefix == "lora_transformer_") return "kohya";
  if (prefix == "transformer.") return kohya_style ? "onetrainer" : "peft";
  if (prefix == "diffusion_model.") {
    if (kohya_style || fused) return "comfyui-native";
    return has_alpha ? "comfyui" : (peft_metadata ? "peft" : "aitoolkit");
  }
  return peft_metadata ? "peft" : "original";
}

struct Parsed {
  LoraWeights weights;
  std::vector<std::string> unknown;  // keys matching no module of the family (or model)
};

Parsed parse(const SafetensorsFile& file, const KeyMap& keys, const std::set<std::string>* model_linears) {
  const std::string& path = file.path();
  std::map<std::string, Group> groups;
  std::vector<std::string> other_kinds, stray;
  for (const auto& info : file.tensors()) {
    std::string name = info.name;
    if (starts_with(name, "base_model.model.")) name = name.substr(17);
    for (const char* ab : {".lora_A", ".lora_B"}) {
      auto at = name.find(std::string(ab) + ".default.weight");
      if (at != std::string::npos && ends_with(name, ".default.weight")) name = name.substr(0, at) + ab + ".weight";
    }
    const Suffix* suffix = nullptr;
    for (const auto& s : kSuffixes)
      if (ends_with(name, s.text)) suffix = &s;
    if (!suffix) {
      bool other = false;
      for (const char* kind : kOtherKinds) other = other || name.find(kind) != std::string::npos;
      (other ? other_kinds : stray).push_back(info.name);
      continue;
    }
    std::string stem = name.substr(0, name.size() - std::strlen(suffix->text));
    Group& g = groups[stem];
    g.stem = stem;
    std::string& slot = g.keys[static_cast<int>(suffix->part)];
    if (!slot.empty()) throw file_error(path, "tensors " + slot + " and " + info.name + " are the same part of one module");
    slot = info.name;
    if (suffix->part != Part::alpha) g.kohya_style = suffix->kohya_style;
  }
  if (!other_kinds.empty())
    throw file_error(path, "adapter kinds other than plain LoRA (DoRA, LoHa, LoKr, full diff, OFT) are not supported: " + join(other_kinds));
  if (!stray.empty()) throw file_error(path, "tensors that are not part of a LoRA: " + join(stray));
  if (groups.empty()) throw file_error(path, "no LoRA tensors (…lora_down/lora_up or …lora_A/lora_B)");

  auto peft = PeftConfig::from(file.metadata(), path);
  const auto beside = PeftConfig::beside(path);
  Parsed parsed;
  LoraWeights& w = parsed.weights;
  w.family = keys.family;
  w.metadata = file.metadata();
  std::map<std::string, int> prefix_count;  // the layout is named by the prefix most modules use
  bool any_kohya_style = false, any_alpha = false, any_fused = false;
  std::map<std::string, std::string> source;  // diffusers module -> file stem
  std::vector<std::string> incomplete, bad, duplicates;
  for (const auto& [stem, g] : groups) {
    if (g.keys[0].empty() || g.keys[1].empty()) {
      incomplete.push_back(stem + (g.keys[0].empty() ? " (no down/lora_A)" : " (no up/lora_B)"));
      continue;
    }
    std::string prefix, rest = stem;
    bool flat = false;
    for (const auto& p : kPrefixes)
      if (starts_with(stem, p.text)) {
        prefix = p.text;
        rest = stem.substr(prefix.size());
        flat = p.flat;
        break;
      }
    ++prefix_count[prefix];
    std::optional<Resolved> resolved;
    if (!flat && model_linears && model_linears->count(rest)) resolved = Resolved{{rest}, nullptr, false};
    if (!resolved) resolved = resolve(keys, rest, flat);
    if (!resolved && flat && model_linears) {
      for (const auto& m : *model_linears)
        if (match_template(m, rest, true)) resolved = Resolved{{m}, nullptr, false};
    }
    if (!resolved) {
      parsed.unknown.push_back(g.keys[0]);
      continue;
    }
    // Copies: the weights outlive the mapping and may be modified in place.
    at::Tensor down = file.get(g.keys[0]).to(torch::kFloat, false, true), up = file.get(g.keys[1]).to(torch::kFloat, false, true);
    if (down.dim() != 2 || up.dim() != 2 || down.size(0) == 0 || up.size(1) != down.size(0)) {
      bad.push_back(stem + " (down " + c10::str(down.sizes()) + ", up " + c10::str(up.sizes()) + ")");
      continue;
    }
    const int64_t rank = down.size(0);
    double alpha = static_cast<double>(rank);  // no alpha anywhere: scale 1
    if (!g.keys[2].empty()) {
      at::Tensor a = file.get(g.keys[2]);
      if (a.numel() != 1) {
        bad.push_back(g.keys[2] + " (alpha with " + std::to_string(a.numel()) + " values)");
        continue;
      }
      alpha = a.to(torch::kDouble).item<double>();
      if (!std::isfinite(alpha)) {
        bad.push_back(g.keys[2] + " (alpha " + std::to_string(alpha) + ")");
        continue;
      }
      any_alpha = true;
    } else if (peft) {
      alpha = peft->alpha_for(flat ? resolved->modules[0] : rest, rank, path);
    } else if (beside) {
      alpha = beside->alpha_for(flat ? resolved->modules[0] : rest, rank, path);
    }
    if (beside) {
      const std::string module = flat ? resolved->modules[0] : rest;
      if (!beside->targets(module, path))
        throw file_error(path, module + " is not among the target_modules of the adapter_config.json beside it");
      const double configured = beside->alpha_for(module, rank, path);
      if (std::abs(configured - alpha) > 1e-6 * std::max(1.0, std::abs(alpha)))
        throw file_error(path, module + ": the file gives alpha " + c10::str(alpha) + " (scale " + c10::str(alpha / rank) +
                                   "), the adapter_config.json beside it " + c10::str(configured) + " (scale " +
                                   c10::str(configured / rank) + ")");
    }
    any_kohya_style = any_kohya_style || g.kohya_style;
    LoraModule m{resolved->modules[0], down, up, alpha};
    std::vector<LoraModule> made;
    if (resolved->modules.size() > 1) {
      any_fused = true;
      if (up.size(0) % static_cast<int64_t>(resolved->modules.size()) != 0) {
        bad.push_back(stem + " (fused module of " + std::to_string(up.size(0)) + " rows, not " +
                      std::to_string(resolved->modules.size()) + " equal blocks)");
        continue;
      }
      made = split_fused(m, resolved->modules);
    } else {
      if (resolved->rule && resolved->rule->swap_halves) m.up = swap_halves(m.up);
      made.push_back(std::move(m));
    }
    for (auto& one : made) {
      auto [it, fresh] = source.emplace(one.name, stem);
      if (fresh) {
        w.modules.push_back(std::move(one));
        continue;
      }
      // A layer named twice with the same delta is one adapter written for two clients' names.
      auto first = std::find_if(w.modules.begin(), w.modules.end(), [&](const LoraModule& x) { return x.name == one.name; });
      if (!torch::equal(delta(*first), delta(one))) duplicates.push_back(one.name + " (" + it->second + " and " + stem + ")");
    }
  }
  if (!incomplete.empty()) throw file_error(path, "LoRA modules without both matrices: " + join(incomplete));
  if (!bad.empty()) throw file_error(path, "malformed LoRA tensors: " + join(bad));
  if (!duplicates.empty()) throw file_error(path, "several adapters for one layer: " + join(duplicates));
  std::sort(w.modules.begin(), w.modules.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  const auto common = std::max_element(prefix_count.begin(), prefix_count.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
  w.format = layout_name(common == prefix_count.end() ? "" : common->first, any_kohya_style, any_alpha,
                         peft.has_value() || beside.has_value(), any_fused);
  return parsed;
}

}  // namespace

LoraWeights read_lora(const std::string& path, const KeyMap& keys, torch::nn::Module* model) {
  auto file = SafetensorsFile::open(path);
  std::set<std::string> names;
  std::map<std::string, nn::Linear> layers;
  if (model)
    for (auto& [name, linear] : linear_layers(*model)) {
      names.insert(name);
      layers.emplace(name, linear);
    }
  Parsed parsed = parse(*file, keys, model ? &names : nullptr);
  if (!parsed.unknown.empty())
    throw file_error(path, "LoRA keys that match no " + (model ? std::string("Linear layer of the model") : keys.family + " module") +
                               ": " + join(parsed.unknown));
  if (model) {
    std::vector<std::string> problems;
    for (const auto& m : parsed.weights.modules) {
      auto it = layers.find(m.name);
      if (it == layers.end()) {
        problems.push_back(m.name + " (no such Linear layer in the model)");
      } else if (m.down.size(1) != it->second->in_features() || m.up.size(0) != it->second->out_features()) {
        problems.push_back(m.name + " (LoRA " + std::to_string(m.up.size(0)) + "x" + std::to_string(m.down.size(1)) +
                           ", layer " + std::to_string(it->second->out_features()) + "x" +
                           std::to_string(it->second->in_features()) + ")");
      }
    }
    if (!problems.empty()) throw file_error(path, "LoRA does not fit the model: " + join(problems));
  }
  return std::move(parsed.weights);
}

LoraWeights read_lora(const std::string& path, const std::vector<const KeyMap*>& candidates) {
  auto file = SafetensorsFile::open(path);
  std::string tried;
  for (const KeyMap* keys : candidates) {
    Parsed parsed = parse(*file, *keys, nullptr);
    if (parsed.unknown.empty()) return std::move(parsed.weights);
    tried += (tried.empty() ? "" : "; ") + keys->family + ": " + join(parsed.unknown, 3);
  }
  throw file_error(path, "LoRA fits no known model family (keys matching no module: " + tried + ")");
}

void merge_lora_files(torch::nn::Module& model, const KeyMap& keys, const std::vector<std::pair<std::string, double>>& files) {
  std::map<std::string, nn::Linear> layers;
  for (auto& [name, linear] : linear_layers(model)) layers.emplace(name, linear);
  std::vector<LoraWeights> all;
  for (const auto& [path, strength] : files) all.push_back(read_lora(path, keys, &model));  // every file fits before any merge
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < all.size(); ++i)
    for (const auto& m : all[i].modules) {
      if (layers.at(m.name)->is_8bit())
        throw Error("a LoRA cannot be merged into '" + m.name + "': its weight is stored in 8 bits (model.weight_dtype)");
      at::Tensor& w = layers.at(m.name)->weight;
      w.copy_(w.to(torch::kFloat) + delta(m).to(w.device()) * files[i].second);
    }
}

}  // namespace dt::lora
