// Strict loading of named tensors into a module tree whose parameter names are checkpoint keys.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "io/checkpoint.h"

namespace torch::nn {
class Module;
}

namespace dt::nn {

// Sets every parameter and buffer of `module` from `tensors` (same names), converted to `dtype` on
// `device`, one tensor at a time (E4M3 weights decoded as they are set); tensors already in that
// dtype on the CPU are used without a copy. Layers declared 8-bit before the load
// (LinearImpl::expect_8bit) take their weight's codes instead (LinearImpl::load_8bit), and their
// scales are not looked for. Throws one dt::Error naming `source` and listing every missing,
// unexpected, wrong-shape or non-float tensor.
void load_state(torch::nn::Module& module, const std::map<std::string, StoredTensor>& tensors,
                const std::string& source, c10::Device device, c10::ScalarType dtype);

// Random weights by the recipe of shared/golden: every parameter of `module` in sorted-name order,
// each from n ~ N(0, 1) of one generator seeded with `seed`: matrices n/√fan_in, biases 0.1·n, other
// vectors (norm scales) 1 + 0.1·n, and the parameters named in `unscaled` n itself. Same module and
// seed ⇒ the same bytes.
NamedTensors golden_recipe_weights(torch::nn::Module& module, uint64_t seed, const std::set<std::string>& unscaled = {});

}  // namespace dt::nn
