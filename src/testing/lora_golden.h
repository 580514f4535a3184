// The LoRA goldens of shared/golden/<family>_lora: the runs of a cases.json (LoRA files with their
// strengths) and the golden tolerance.
#pragma once
#include <algorithm>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "testing/device.h"

namespace dt::testing {

// max|c − g| − (atol + rtol·max|g|): positive when `c` is outside the tolerance (golden/README.md),
// widened to TF32's on a GPU that runs with it (testing/device.h).
inline double golden_excess(const at::Tensor& c, const at::Tensor& g, double atol = 1e-4, double rtol = 1e-4) {
  if (test_device().is_cuda() && test_tf32()) atol = std::max(atol, 1e-3), rtol = std::max(rtol, 5e-3);
  return (c.cpu() - g.cpu()).abs().max().item<double>() - (atol + rtol * g.abs().max().item<double>());
}

struct GoldenLoraRun {
  std::vector<std::pair<std::string, double>> files;  // paths in `dir`, strengths
  std::string label;                                  // "file:strength ..." for failure messages
  std::string expected_prefix;                        // its outputs in expected.safetensors
};

struct GoldenLoraCases {
  std::vector<GoldenLoraRun> runs;
  double atol = 0, rtol = 0;
};

// `dir`/cases.json; dt::Error when it cannot be read.
inline GoldenLoraCases golden_lora_cases(const std::string& dir) {
  std::ifstream in(dir + "cases.json");
  if (!in) throw file_error(dir + "cases.json", "cannot be read");
  const nlohmann::json cases = nlohmann::json::parse(in);
  GoldenLoraCases out;
  out.atol = cases["atol"];
  out.rtol = cases["rtol"];
  for (const auto& run : cases["runs"]) {
    GoldenLoraRun r;
    for (const auto& l : run["lora"]) {
      r.files.emplace_back(dir + l[0].get<std::string>(), l[1].get<double>());
      r.label += l[0].get<std::string>() + ":" + std::to_string(l[1].get<double>()) + " ";
    }
    r.expected_prefix = run["expected_prefix"];
    out.runs.push_back(std::move(r));
  }
  return out;
}

}  // namespace dt::testing
