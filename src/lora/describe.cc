#include <torch/torch.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/checkpoint.h"
#include "lora/file.h"

namespace dt::lora {

std::string describe_lora(const Checkpoint& ck, const std::vector<const KeyMap*>& candidates) {
  if (ck.files().size() != 1 || std::filesystem::is_directory(ck.path())) return "";
  bool any_lora = false, any_alpha = false;
  for (const auto& t : ck.files()[0]->tensors()) {
    any_lora = any_lora || t.name.find("lora_") != std::string::npos || t.name.find(".lora.") != std::string::npos;
    any_alpha = any_alpha || (t.name.size() > 6 && t.name.compare(t.name.size() - 6, 6, ".alpha") == 0);
  }
  if (!any_lora) return "";
  LoraWeights w;
  try {
    w = read_lora(ck.path(), candidates);
  } catch (const Error& e) {
    return std::string("not readable: ") + e.what();
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
  std::ostringstream out;
  out << w.format << " format, fits " << w.family << ", " << w.modules.size() << " targets, rank " << list(ranks)
      << ", alpha ";
  if (any_alpha) out << list(alphas);
  else if (w.metadata.count("lora_adapter_metadata")) out << list(alphas) << " (from lora_adapter_metadata)";
  else out << "none stored (scale 1, folded into the weights)";
  return out.str();
}

}  // namespace dt::lora
