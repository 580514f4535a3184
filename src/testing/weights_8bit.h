// What the family tests of 8-bit block weights share: the names of a model's 8-bit layers, and a
// full-precision twin whose weights are the 8-bit model's dequantized values.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "nn/linear.h"
#include "nn/weights_8bit.h"

namespace dt::testing {

// Sets each Linear of `dense` whose twin in `eight` is stored in 8 bits to that twin's dequantized
// weight (in `dense`'s dtype); returns those layers' names, sorted.
inline std::vector<std::string> copy_dequantized(torch::nn::Module& eight, torch::nn::Module& dense) {
  std::map<std::string, nn::LinearImpl*> targets;
  for (const auto& item : dense.named_modules())
    if (auto* l = item.value()->as<nn::LinearImpl>()) targets[item.key()] = l;
  std::vector<std::string> names;
  torch::NoGradGuard no_grad;
  for (const auto& item : eight.named_modules()) {
    auto* l = item.value()->as<nn::LinearImpl>();
    if (!l || !l->is_8bit()) continue;
    at::Tensor& w = targets.at(item.key())->weight;
    w.copy_(nn::dequantize_rows(l->weight, l->weight_scale).to(w.device(), w.scalar_type()));
    names.push_back(item.key());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace dt::testing
