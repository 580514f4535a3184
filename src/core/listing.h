// Lists of names in error messages: "a, b, c, ... (42 in all)".
#pragma once
#include <string>
#include <vector>

namespace dt {

inline std::string join(const std::vector<std::string>& items, size_t limit = 20) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < limit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > limit) out += ", ... (" + std::to_string(items.size()) + " in all)";
  return out;
}

}  // namespace dt
