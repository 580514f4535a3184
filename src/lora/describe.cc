#include <torch/torch.h>

#include <set>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "lora/file.h"

namespace dt::lora {

std::optional<std::string> describe_lora(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  bool any_lora = false, any_alpha = false;
  for (const auto& t : file->tensors()) {
    any_lora = any_lora || t.name.find("lora_") != std::string::npos || t.name.find(".lora.") != std::string::npos;
    any_alpha = any_alpha || (t.name.size() > 6 && t.name.compare(t.name.size() - 6, 6, ".alpha") == 0);
  }
  if (!any_lora) return std::nullopt;
  std::ostringstream out;
  LoraWeights w;
  try {
    w = read_lora(path);
  } catch (const Error& e) {
    out << "LoRA: not readable: " << e.what() << "\n";
    return out.str();
  }
  std::set<int64_t> ranks;
  std::set<double> alphas;
  for (const auto& m : w.modules) {
    ranks.insert(m.rank());
    alphas.insert(m.alpha);
  }
  auto list = [](const auto& values) {
    std::ostringstream s;
    for (auto it = values.begin(); it != values.end(); ++it) s << (it == values.begin() ? "" : ", ") << *it;
    return s.str();
  };
  const bool alpha_in_metadata = w.metadata.count("lora_adapter_metadata") != 0;
  out << "LoRA format: " << w.format << "\n"
      << "LoRA family: " << w.family << "\n"
      << "LoRA targets: " << w.modules.size() << " layers\n"
      << "LoRA rank: " << list(ranks) << "\n"
      << "LoRA alpha: "
      << (any_alpha ? list(alphas) : alpha_in_metadata ? list(alphas) + " (from lora_adapter_metadata)"
                                                       : "none stored (scale 1, folded into the weights)")
      << "\n";
  return out.str();
}

}  // namespace dt::lora
