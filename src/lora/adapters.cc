#include "lora/adapters.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/listing.h"
#include "core/regex.h"

namespace dt::lora {

std::vector<std::pair<std::string, nn::Linear>> linear_layers(torch::nn::Module& root) {
  std::vector<std::pair<std::string, nn::Linear>> out;
  for (const auto& item : root.named_modules("", /*include_self=*/false))
    if (auto linear = std::dynamic_pointer_cast<nn::LinearImpl>(item.value())) out.emplace_back(item.key(), nn::Linear(linear));
  return out;
}

std::vector<std::string> select_layers(torch::nn::Module& root, const Selection& selection,
                                       const std::map<std::string, std::string>& presets) {
  std::vector<Regex> include, exclude;
  if (!selection.preset.empty()) {
    auto it = presets.find(selection.preset);
    if (it == presets.end()) {
      std::vector<std::string> known;
      for (const auto& [name, regex] : presets) known.push_back(name);
      throw Error("unknown LoRA layer preset '" + selection.preset + "' (known: " + join(known) + ")");
    }
    include.emplace_back(it->second);
  }
  for (const auto& r : selection.include) include.emplace_back(r);
  for (const auto& r : selection.exclude) exclude.emplace_back(r);
  auto any = [](const std::vector<Regex>& rs, const std::string& path) {
    for (const auto& r : rs)
      if (r.search(path)) return true;
    return false;
  };
  std::vector<std::string> chosen;
  for (const auto& [path, linear] : linear_layers(root))
    if ((include.empty() || any(include, path)) && !any(exclude, path)) chosen.push_back(path);
  if (chosen.empty()) throw Error("the LoRA layer choice (preset, include, exclude) matches no Linear layer of the model");
  return chosen;
}

namespace {

// splitmix64: decorrelates the seeds of neighbouring layers.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t layer_seed(uint64_t seed, const std::string& path) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the path
  for (unsigned char c : path) h = (h ^ c) * 0x100000001b3ull;
  return mix(seed ^ mix(h));
}

std::map<std::string, nn::Linear> layers_by_path(torch::nn::Module& root) {
  std::map<std::string, nn::Linear> out;
  for (auto& [path, linear] : linear_layers(root)) out.emplace(path, linear);
  return out;
}

std::shared_ptr<nn::LoraState> share(nn::LoraState& state) {
  return std::shared_ptr<nn::LoraState>(std::shared_ptr<void>(), &state);  // not owned: the model owns it
}

}  // namespace

Adapters Adapters::create(torch::nn::Module& root, nn::LoraState& state, const std::vector<std::string>& layers,
                          const AdapterOptions& options) {
  if (options.rank <= 0) throw Error("LoRA rank must be positive, got " + std::to_string(options.rank));
  auto by_path = layers_by_path(root);
  Adapters adapters;
  for (const auto& path : layers) {
    auto it = by_path.find(path);
    if (it == by_path.end()) throw Error("no Linear layer '" + path + "' in the model");
    auto& layer = *it->second;
    if (layer.lora) throw Error("layer '" + path + "' already has a LoRA adapter");
    auto adapter = std::make_shared<nn::LoraAdapter>();
    const double bound = 1.0 / std::sqrt(static_cast<double>(layer.in_features()));
    auto generator = at::detail::createCPUGenerator(layer_seed(options.seed, path));
    adapter->down = torch::empty({options.rank, layer.in_features()}, torch::kFloat)
                        .uniform_(-bound, bound, generator)
                        .to(layer.weight.device())
                        .requires_grad_(true);
    adapter->up = torch::zeros({layer.out_features(), options.rank},
                               torch::TensorOptions().dtype(torch::kFloat).device(layer.weight.device()))
                      .requires_grad_(true);
    adapter->alpha = options.alpha;
    adapter->dropout = options.dropout;
    adapter->state = share(state);
    layer.lora = adapter;
    adapters.names_.push_back(path);
    adapters.layers_.push_back(it->second);
  }
  return adapters;
}

Adapters Adapters::attach(torch::nn::Module& root, nn::LoraState& state, const LoraWeights& weights, double strength,
                          double dropout) {
  std::map<std::string, const LoraModule*> wanted;
  for (const auto& m : weights.modules) wanted[m.name] = &m;
  std::vector<std::string> problems;
  Adapters adapters;
  std::vector<std::shared_ptr<nn::LoraAdapter>> made;
  for (auto& [path, layer] : linear_layers(root)) {
    auto it = wanted.find(path);
    if (it == wanted.end()) continue;
    const LoraModule& m = *it->second;
    wanted.erase(it);
    if (m.down.size(1) != layer->in_features() || m.up.size(0) != layer->out_features()) {
      problems.push_back(path + " (LoRA " + std::to_string(m.up.size(0)) + "x" + std::to_string(m.down.size(1)) +
                         ", layer " + std::to_string(layer->out_features()) + "x" +
                         std::to_string(layer->in_features()) + ")");
      continue;
    }
    if (layer->lora) {
      problems.push_back(path + " (already has an adapter)");
      continue;
    }
    auto adapter = std::make_shared<nn::LoraAdapter>();
    auto on = torch::TensorOptions().dtype(torch::kFloat).device(layer->weight.device());
    adapter->down = m.down.to(on).clone().requires_grad_(true);
    adapter->up = m.up.to(on).clone().requires_grad_(true);
    adapter->alpha = m.alpha * strength;
    adapter->dropout = dropout;
    adapter->state = share(state);
    made.push_back(adapter);
    adapters.names_.push_back(path);
    adapters.layers_.push_back(layer);
  }
  for (const auto& [name, m] : wanted) problems.push_back(name + " (no such Linear layer)");
  if (!problems.empty()) throw Error("LoRA does not fit the model: " + join(problems));
  // Attached only once everything fits, so a refused LoRA leaves the model untouched.
  for (size_t i = 0; i < made.size(); ++i) adapters.layers_[i]->lora = made[i];
  return adapters;
}

std::vector<at::Tensor> Adapters::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& layer : layers_) {
    out.push_back(layer->lora->down);
    out.push_back(layer->lora->up);
  }
  return out;
}

NamedTensors Adapters::state_dict() const {
  NamedTensors out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& a = *layers_[i]->lora;
    out.emplace_back(names_[i] + ".lora_down.weight", a.down.detach());
    out.emplace_back(names_[i] + ".lora_up.weight", a.up.detach());
    out.emplace_back(names_[i] + ".alpha", torch::tensor(a.alpha, torch::kDouble));
  }
  return out;
}

void Adapters::load_state_dict(const NamedTensors& state) {
  std::map<std::string, at::Tensor> given(state.begin(), state.end());
  std::vector<std::string> problems;
  auto take = [&](const std::string& name, const at::Tensor& like) -> at::Tensor {
    auto it = given.find(name);
    if (it == given.end()) {
      problems.push_back(name + " (missing)");
      return {};
    }
    at::Tensor t = it->second;
    given.erase(it);
    if (like.defined() && t.sizes() != like.sizes()) {
      problems.push_back(name + " (shape " + c10::str(t.sizes()) + ", adapter " + c10::str(like.sizes()) + ")");
      return {};
    }
    return t;
  };
  std::vector<std::array<at::Tensor, 3>> found;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& a = *layers_[i]->lora;
    found.push_back({take(names_[i] + ".lora_down.weight", a.down), take(names_[i] + ".lora_up.weight", a.up),
                     take(names_[i] + ".alpha", at::Tensor())});
  }
  for (const auto& [name, t] : given) problems.push_back(name + " (no such adapter)");
  if (!problems.empty()) throw Error("LoRA state does not fit the adapters: " + join(problems));
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto& a = *layers_[i]->lora;
    a.down.copy_(found[i][0]);
    a.up.copy_(found[i][1]);
    a.alpha = found[i][2].item<double>();
  }
}

LoraWeights Adapters::weights(const std::string& family) const {
  LoraWeights w;
  w.family = family;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& a = *layers_[i]->lora;
    w.modules.push_back({names_[i], a.down.detach().to(torch::kCPU, torch::kFloat).clone(),
                         a.up.detach().to(torch::kCPU, torch::kFloat).clone(), a.alpha});
  }
  std::sort(w.modules.begin(), w.modules.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return w;
}

namespace {

// W ← W + sign·scale·up·down, in float32, stored back in W's dtype.
void add_delta(nn::LinearImpl& layer, double sign) {
  if (layer.is_8bit()) throw Error("a LoRA cannot be merged into a weight stored in 8 bits (model.weight_dtype)");
  torch::NoGradGuard no_grad;
  const auto& a = *layer.lora;
  at::Tensor d = torch::matmul(a.up.detach(), a.down.detach()) * (sign * a.scale());
  layer.weight.copy_(layer.weight.to(torch::kFloat) + d);
}

}  // namespace

void Adapters::merge() {
  if (merged_) return;
  for (auto& layer : layers_) {
    add_delta(*layer, +1);
    layer->lora->merged = true;
  }
  merged_ = true;
}

void Adapters::unmerge() {
  if (!merged_) return;
  for (auto& layer : layers_) {
    add_delta(*layer, -1);
    layer->lora->merged = false;
  }
  merged_ = false;
}

void Adapters::detach() {
  unmerge();
  for (auto& layer : layers_) layer->lora.reset();
  names_.clear();
  layers_.clear();
}

}  // namespace dt::lora
