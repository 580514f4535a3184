#include "nn/load_state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/error.h"

namespace dt::nn {
namespace {

std::string shape_string(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// "3 missing (a, b, c)" with at most a few names shown.
std::string listing(const std::string& what, const std::vector<std::string>& names) {
  constexpr size_t kShown = 8;
  std::string s = std::to_string(names.size()) + " " + what + " (";
  for (size_t i = 0; i < names.size() && i < kShown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > kShown) s += ", … " + std::to_string(names.size() - kShown) + " more";
  return s + ")";
}

}  // namespace

NamedTensors golden_recipe_weights(torch::nn::Module& module, uint64_t seed, const std::set<std::string>& unscaled) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> sorted;
  for (const auto& item : module.named_parameters()) sorted.emplace(item.key(), item.value());
  NamedTensors tensors;
  for (const auto& [name, param] : sorted) {
    at::Tensor noise = at::normal(0.0, 1.0, param.sizes(), generator);
    at::Tensor value;
    if (unscaled.count(name)) value = noise;
    else if (param.dim() == 2) value = noise / std::sqrt(static_cast<double>(param.size(1)));
    else if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) value = 0.1 * noise;
    else value = 1.0 + 0.1 * noise;
    tensors.emplace_back(name, value);
  }
  return tensors;
}

void load_state(torch::nn::Module& module, const std::map<std::string, at::Tensor>& tensors, const std::string& source,
                c10::Device device, c10::ScalarType dtype) {
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const auto& item : module.named_parameters()) targets.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) targets.emplace_back(item.key(), item.value());
  std::vector<std::string> missing, unexpected, wrong_shape, not_float;
  std::set<std::string> expected;
  for (const auto& [name, target] : targets) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) missing.push_back(name);
    else if (it->second.sizes() != target.sizes())
      wrong_shape.push_back(name + " " + shape_string(it->second.sizes()) + " vs model " + shape_string(target.sizes()));
    else if (!at::isFloatingType(it->second.scalar_type())) not_float.push_back(name);
  }
  for (const auto& [name, _] : tensors)
    if (!expected.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !wrong_shape.empty() || !not_float.empty()) {
    std::string message = "does not fit the model:";
    const char* separator = " ";
    for (const auto& [what, names] : {std::pair{"missing", &missing}, {"unexpected", &unexpected},
                                      {"wrong shape", &wrong_shape}, {"not floating point", &not_float}})
      if (!names->empty()) message += separator + listing(what, *names), separator = "; ";
    throw file_error(source, message);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.set_data(tensors.at(name).to(device, dtype));
}

}  // namespace dt::nn
