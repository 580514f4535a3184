// `deltatrain forward`: run one component on the inputs of a golden-style io.safetensors and write
// its outputs under the golden's names (contract: shared/golden/README.md). Each component lives in
// its own file and is listed once in forward.cc.
#pragma once
#include <string>
#include <utility>
#include <vector>

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
};

struct ForwardComponent {
  const char* name;
  void (*run)(const ForwardArgs& args);
};

const std::vector<ForwardComponent>& forward_components();

// Component entry points, one file each.
void forward_zimage_transformer(const ForwardArgs& args);
void forward_flux2_transformer(const ForwardArgs& args);
void forward_qwen3(const ForwardArgs& args);

}  // namespace dt
