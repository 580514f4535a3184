// Strict loading of named tensors into a module tree whose parameter names are checkpoint keys.
#pragma once
#include <map>
#include <string>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace torch::nn {
class Module;
}

namespace dt::nn {

// Sets every parameter and buffer of `module` from `tensors` (same names), converted to `dtype` on
// `device`; tensors already in that dtype on the CPU are used without a copy. Throws one dt::Error
// naming `source` and listing every missing, unexpected, wrong-shape or non-float tensor.
void load_state(torch::nn::Module& module, const std::map<std::string, at::Tensor>& tensors,
                const std::string& source, c10::Device device, c10::ScalarType dtype);

}  // namespace dt::nn
