// The arguments of `deltatrain forward`: one component run on the inputs of a golden-style
// io.safetensors, its outputs written under the golden's names (shared/golden/README.md).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace dt {

struct ForwardArgs {
  std::string model;   // weights folder or file
  std::string inputs;  // io.safetensors
  std::string case_name;  // "A", "B", ... or empty (goldens without cases)
  std::string output;  // where the outputs are written
  std::vector<std::pair<std::string, double>> loras;  // --lora FILE[:STRENGTH]
  bool explicit_attention = false;  // force the explicit softmax(q·kᵀ)·v path over fused attention
  // Input name with the case prefix: "A.in.t" for case A, "in.t" without a case.
  std::string in(const std::string& name) const { return (case_name.empty() ? "" : case_name + ".") + "in." + name; }
  std::string out(const std::string& name) const { return (case_name.empty() ? "" : case_name + ".") + "out" + (name.empty() ? "" : "." + name); }
  std::string mid_prefix() const { return (case_name.empty() ? "" : case_name + ".") + "mid."; }
  // The input `name` of this case from `io` (the file at `inputs`); dt::Error naming it when absent.
  at::Tensor input(const SafetensorsFile& io, const std::string& name) const {
    if (!io.contains(in(name))) throw file_error(inputs, "no input tensor '" + in(name) + "'");
    return io.get(in(name));
  }
};

}  // namespace dt
