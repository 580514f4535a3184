#include "nn/load_state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/error.h"
#include "nn/linear.h"

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

void load_state(torch::nn::Module& module, const std::map<std::string, StoredTensor>& tensors, const std::string& source,
                c10::Device device, c10::ScalarType dtype) {
  std::map<std::string, LinearImpl*> stored_8bit;  // weight name → its layer, declared 8-bit before the load
  for (const auto& item : module.named_modules()) {
    auto* linear = item.value()->as<LinearImpl>();
    if (linear && linear->is_8bit()) stored_8bit[item.key().empty() ? "weight" : item.key() + ".weight"] = linear;
  }
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const auto& item : module.named_parameters()) targets.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) {
    const std::string& name = item.key();
    const std::string suffix = "_scale";  // an 8-bit weight's scales come with its codes
    if (name.size() > suffix.size() && stored_8bit.count(name.substr(0, name.size() - suffix.size()))) continue;
    targets.emplace_back(name, item.value());
  }
  std::vector<std::string> missing, unexpected, wrong_shape, not_float;
  std::set<std::string> expected;
  for (const auto& [name, target] : targets) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) missing.push_back(name);
    else if (it->second.sizes() != target.sizes())
      wrong_shape.push_back(name + " " + shape_string(it->second.sizes()) + " vs model " + shape_string(target.sizes()));
    else if (!it->second.is_e4m3() && !at::isFloatingType(it->second.data.scalar_type())) not_float.push_back(name);
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
  for (auto& [name, target] : targets) {
    const StoredTensor& stored = tensors.at(name);
    const auto layer = stored_8bit.find(name);
    if (layer == stored_8bit.end()) {
      const at::Tensor value = stored.values().to(device, dtype);  // E4M3 weights decoded one at a time
      target.set_data(value);
      // A copy (another dtype, decoded, or on a device) leaves the file's pages to the file: mapped
      // and read, they would stay resident beside it.
      if (value.data_ptr() != stored.data.data_ptr()) release_mapped_pages(stored.data);
      continue;
    }
    try {
      layer->second->load_8bit(stored);
    } catch (const Error& e) {
      throw file_error(source, "tensor '" + name + "': " + e.what());
    }
  }
}

}  // namespace dt::nn
